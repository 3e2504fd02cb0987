//! IPv4 CIDRs as configs write them (`"10.233.64.0/18"`), read with errors that say what is
//! wrong with the text (ipnet's own says only "invalid IP address syntax"), for serde's
//! `deserialize_with` in every podnet config.

use ipnet::Ipv4Net;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use thiserror::Error;

/// Why a text is not an IPv4 CIDR.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CidrError {
    #[error("no prefix length (write it as address/length, e.g. 10.233.64.0/18)")]
    NoPrefix,
    #[error("{0:?} is not an IPv4 address")]
    Address(String),
    #[error("prefix length {0:?} is not a number")]
    NotANumber(String),
    #[error("prefix length {0} is longer than 32")]
    TooLong(u32),
}

/// `a.b.c.d/n`; host bits are allowed here (the pool's own check names them).
pub fn parse(text: &str) -> Result<Ipv4Net, CidrError> {
    let (addr, len) = text.split_once('/').ok_or(CidrError::NoPrefix)?;
    let addr: std::net::Ipv4Addr = addr
        .parse()
        .map_err(|_| CidrError::Address(addr.to_string()))?;
    let len: u32 = len
        .parse()
        .map_err(|_| CidrError::NotANumber(len.to_string()))?;
    let len = u8::try_from(len)
        .ok()
        .filter(|l| *l <= 32)
        .ok_or(CidrError::TooLong(len))?;
    Ok(Ipv4Net::new(addr, len).expect("the length was checked"))
}

/// A CIDR read through [`parse`].
struct Cidr(Ipv4Net);

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map(Cidr).map_err(serde::de::Error::custom)
    }
}

/// `deserialize_with` for an `Ipv4Net`.
pub fn de<'de, D: Deserializer<'de>>(d: D) -> Result<Ipv4Net, D::Error> {
    Cidr::deserialize(d).map(|c| c.0)
}

/// `deserialize_with` for an `Option<Ipv4Net>`.
pub fn de_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ipv4Net>, D::Error> {
    Ok(Option::<Cidr>::deserialize(d)?.map(|c| c.0))
}

/// `deserialize_with` for an `Option<Vec<Ipv4Net>>`.
pub fn de_opt_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Ipv4Net>>, D::Error> {
    let list = Option::<Vec<Cidr>>::deserialize(d)?;
    Ok(list.map(|l| l.into_iter().map(|c| c.0).collect()))
}

/// `deserialize_with` for blocks by node (`nodeBlocks`).
pub fn de_by_node<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Vec<Ipv4Net>>, D::Error> {
    let by_node = BTreeMap::<String, Vec<Cidr>>::deserialize(d)?;
    Ok(by_node
        .into_iter()
        .map(|(n, l)| (n, l.into_iter().map(|c| c.0).collect()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_what_is_wrong() {
        assert_eq!(
            parse("10.233.64.0/18").unwrap().to_string(),
            "10.233.64.0/18"
        );
        assert_eq!(parse("10.0.0.1/16").unwrap().to_string(), "10.0.0.1/16");
        for (text, why) in [
            ("10.233.64.0/33", "prefix length 33 is longer than 32"),
            ("10.233.64.0/999", "prefix length 999 is longer than 32"),
            ("10.233.64.0", "no prefix length"),
            ("banana", "no prefix length"),
            ("10.233.64/18", "\"10.233.64\" is not an IPv4 address"),
            ("fd00::/64", "\"fd00::\" is not an IPv4 address"),
            ("10.0.0.0/x", "prefix length \"x\" is not a number"),
            ("10.0.0.0/-1", "prefix length \"-1\" is not a number"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.starts_with(why), "{text}: {e}");
        }
    }
}
