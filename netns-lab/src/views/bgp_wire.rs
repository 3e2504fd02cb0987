//! BGP messages on the wire (RFC 4271), decoded to one line for `capture`: OPEN with AS and
//! router id, UPDATE with its prefixes and NEXT_HOP, KEEPALIVE, NOTIFICATION. Only reads; a
//! message cut off by the segment's end is said to be so.

use std::net::Ipv4Addr;

/// Every BGP message in one TCP payload, `; `-separated.
pub fn describe(payload: &[u8]) -> String {
    let mut out = Vec::new();
    let mut rest = payload;
    while !rest.is_empty() {
        if rest.len() < 19 || rest[..16] != [0xff; 16] {
            out.push(format!("({} bytes of a message)", rest.len()));
            break;
        }
        let len = usize::from(u16::from_be_bytes([rest[16], rest[17]]));
        if !(19..=4096).contains(&len) || len > rest.len() {
            out.push(format!("{} (cut off)", kind(rest[18])));
            break;
        }
        out.push(message(rest[18], &rest[19..len]));
        rest = &rest[len..];
    }
    out.join("; ")
}

fn kind(t: u8) -> String {
    match t {
        1 => "OPEN".into(),
        2 => "UPDATE".into(),
        3 => "NOTIFICATION".into(),
        4 => "KEEPALIVE".into(),
        5 => "ROUTE-REFRESH".into(),
        t => format!("type {t}"),
    }
}

fn message(t: u8, body: &[u8]) -> String {
    match t {
        1 => open(body).unwrap_or_else(|| "OPEN (malformed)".into()),
        2 => update(body).unwrap_or_else(|| "UPDATE (malformed)".into()),
        3 => match body {
            [code, sub, ..] => format!("NOTIFICATION {code}/{sub} ({})", notification(*code)),
            _ => "NOTIFICATION (malformed)".into(),
        },
        t => kind(t),
    }
}

fn notification(code: u8) -> &'static str {
    match code {
        1 => "message header error",
        2 => "OPEN message error",
        3 => "UPDATE message error",
        4 => "hold timer expired",
        5 => "finite state machine error",
        6 => "cease",
        _ => "unknown",
    }
}

fn ipv4(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

fn open(b: &[u8]) -> Option<String> {
    let (version, asn16, hold) = (
        b.first()?,
        u16::from_be_bytes([*b.get(1)?, *b.get(2)?]),
        u16::from_be_bytes([*b.get(3)?, *b.get(4)?]),
    );
    let id = ipv4(b.get(5..9)?);
    let params = b.get(10..10 + usize::from(*b.get(9)?))?;
    // The 4-octet AS capability (code 65) carries the real AS when it does not fit 16 bits.
    let mut asn = u32::from(asn16);
    let mut p = params;
    while p.len() >= 2 {
        let plen = usize::from(p[1]);
        let value = p.get(2..2 + plen)?;
        if p[0] == 2 {
            let mut caps = value;
            while caps.len() >= 2 {
                let clen = usize::from(caps[1]);
                let cv = caps.get(2..2 + clen)?;
                if caps[0] == 65 && clen == 4 {
                    asn = u32::from_be_bytes([cv[0], cv[1], cv[2], cv[3]]);
                }
                caps = &caps[2 + clen..];
            }
        }
        p = &p[2 + plen..];
    }
    Some(format!(
        "OPEN version {version}, AS {asn}, router id {id}, hold time {hold} s"
    ))
}

/// Prefixes in the NLRI encoding, with ADD-PATH's 4-byte path id before each when `add_path`.
fn prefixes(mut b: &[u8], add_path: bool) -> Option<Vec<String>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        if add_path {
            b = b.get(4..)?;
        }
        let bits = *b.first()?;
        if bits > 32 {
            return None;
        }
        let n = usize::from(bits).div_ceil(8);
        let mut addr = [0u8; 4];
        addr[..n].copy_from_slice(b.get(1..1 + n)?);
        out.push(format!("{}/{bits}", Ipv4Addr::from(addr)));
        b = &b[1 + n..];
    }
    Some(out)
}

/// ADD-PATH is negotiated per session, which one segment does not show: the reading with path
/// ids is taken when it fits, since podnet's BIRDs always offer it.
fn nlri(b: &[u8]) -> Option<Vec<String>> {
    prefixes(b, true).or_else(|| prefixes(b, false))
}

fn update(b: &[u8]) -> Option<String> {
    let wlen = usize::from(u16::from_be_bytes([*b.first()?, *b.get(1)?]));
    let withdrawn = nlri(b.get(2..2 + wlen)?)?;
    let at = 2 + wlen;
    let alen = usize::from(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]));
    let mut attrs = b.get(at + 2..at + 2 + alen)?;
    let announced = nlri(b.get(at + 2 + alen..)?)?;
    let mut next_hop = None;
    let mut as_path = None;
    while attrs.len() >= 3 {
        let (flags, code) = (attrs[0], attrs[1]);
        let (len, head) = if flags & 0x10 != 0 {
            (
                usize::from(u16::from_be_bytes([attrs[2], *attrs.get(3)?])),
                4,
            )
        } else {
            (usize::from(attrs[2]), 3)
        };
        let value = attrs.get(head..head + len)?;
        match code {
            3 if len == 4 => next_hop = Some(ipv4(value)),
            2 => as_path = Some(path(value)),
            _ => {}
        }
        attrs = &attrs[head + len..];
    }
    if announced.is_empty() && withdrawn.is_empty() {
        return Some("UPDATE end-of-RIB".into());
    }
    let mut s = String::from("UPDATE");
    if !announced.is_empty() {
        s += &format!(" {}", announced.join(" "));
        if let Some(nh) = next_hop {
            s += &format!(" next hop {nh}");
        }
        if let Some(p) = as_path {
            s += &format!(" AS path [{p}]");
        }
    }
    if !withdrawn.is_empty() {
        s += &format!(" withdrawn {}", withdrawn.join(" "));
    }
    Some(s)
}

/// AS_PATH segments of 4-byte AS numbers (both ends of podnet's sessions speak AS4).
fn path(mut v: &[u8]) -> String {
    let mut out = Vec::new();
    while v.len() >= 2 {
        let n = usize::from(v[1]);
        let Some(ases) = v.get(2..2 + 4 * n) else {
            break;
        };
        out.extend(
            ases.chunks(4)
                .map(|a| u32::from_be_bytes([a[0], a[1], a[2], a[3]]).to_string()),
        );
        v = &v[2 + 4 * n..];
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(t: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![0xff; 16];
        m.extend(((19 + body.len()) as u16).to_be_bytes());
        m.push(t);
        m.extend(body);
        m
    }

    #[test]
    fn open_shows_the_four_byte_as_and_router_id() {
        // version 4, AS_TRANS 23456, hold 240, id 192.168.110.103, capability 65 = AS 64512.
        let mut body = vec![4, 0x5b, 0xa0, 0, 240, 192, 168, 110, 103];
        let cap = [2, 6, 65, 4, 0, 0, 0xfc, 0x00];
        body.push(cap.len() as u8);
        body.extend(cap);
        assert_eq!(
            describe(&msg(1, &body)),
            "OPEN version 4, AS 64512, router id 192.168.110.103, hold time 240 s"
        );
    }

    #[test]
    fn update_shows_prefix_next_hop_and_path_with_and_without_add_path() {
        let attrs = [
            0x40, 1, 1, 0, // ORIGIN IGP
            0x40, 2, 0, // AS_PATH empty (iBGP)
            0x40, 3, 4, 192, 168, 110, 104, // NEXT_HOP
        ];
        let mut body = vec![0, 0, 0, attrs.len() as u8];
        body.extend(attrs);
        let mut plain = body.clone();
        plain.extend([24, 10, 233, 78]);
        assert_eq!(
            describe(&msg(2, &plain)),
            "UPDATE 10.233.78.0/24 next hop 192.168.110.104 AS path []"
        );
        let mut add_path = body;
        add_path.extend([0, 0, 0, 1, 24, 10, 233, 78]);
        assert_eq!(
            describe(&msg(2, &add_path)),
            "UPDATE 10.233.78.0/24 next hop 192.168.110.104 AS path []"
        );
    }

    #[test]
    fn keepalives_notifications_and_several_in_one_segment() {
        let mut two = msg(4, &[]);
        two.extend(msg(3, &[6, 2]));
        assert_eq!(describe(&two), "KEEPALIVE; NOTIFICATION 6/2 (cease)");
        assert_eq!(describe(&msg(2, &[0, 0, 0, 0])), "UPDATE end-of-RIB");
    }

    #[test]
    fn garbage_is_said_not_panicked_on() {
        assert_eq!(describe(&[1, 2, 3]), "(3 bytes of a message)");
        let mut cut = msg(2, &[0, 0, 0, 9, 1]);
        cut.truncate(20);
        assert!(describe(&cut).contains("cut off"));
        for n in 0..40 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 % 256) as u8).collect();
            let mut m = vec![0xff; 16];
            m.extend(((19 + junk.len()) as u16).to_be_bytes());
            m.push(1 + (n % 4) as u8);
            m.extend(&junk);
            let _ = describe(&m);
        }
    }
}
