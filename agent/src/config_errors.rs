//! What a refused agent config file says: the key's path, the value as written, why, and the
//! line (`pool: "10.233.64.0/33": prefix length 33 is longer than 32 (line 3)`). Paths come
//! from `serde_path_to_error` over toml's deserializer (toml's own errors give the line, not
//! always the key), the value is read back from the file at that path, so every key stays a
//! plain `Deserialize` field.

use podnet_ipam::PoolSetting;
use serde_path_to_error::Segment;

/// The message for a file toml or serde refused.
pub fn parse_error(text: &str, e: serde_path_to_error::Error<toml::de::Error>) -> String {
    let mut here = text.parse::<toml::Table>().ok().map(toml::Value::Table);
    for segment in e.path().iter() {
        here = match segment {
            Segment::Map { key } => here.and_then(|v| v.get(key).cloned()),
            Segment::Seq { index } => here.and_then(|v| v.get(*index).cloned()),
            _ => None,
        };
    }
    let path = e.path().to_string();
    let inner = e.into_inner();
    let line = inner
        .span()
        .map(|s| format!(" (line {})", text[..s.start].matches('\n').count() + 1))
        .unwrap_or_default();
    let message = inner.message().trim_end();
    match here.filter(|v| !v.is_table()) {
        _ if path == "." => format!("{message}{line}"),
        Some(v) => format!("{path}: {v}: {message}{line}"),
        None => format!("{path}: {message}{line}"),
    }
}

/// Where in the agent's file a pool setting is written (its pins are `node-block`).
pub fn setting_key(s: &PoolSetting) -> String {
    match s {
        PoolSetting::Cidr => "pool".into(),
        PoolSetting::BlockSize => "block-size".into(),
        PoolSetting::NodeName(_) => "node-name".into(),
        PoolSetting::NodeBlock { index, .. } => format!("node-block[{index}]"),
    }
}

#[cfg(test)]
mod tests {
    use crate::config_file::AgentFile;

    /// Each key with a bad value: the error names its path, the value as written and the line.
    #[test]
    fn each_bad_key_names_its_path_value_and_line() {
        for (file, want) in [
            (
                "node-name = \"a\"\npool = \"10.233.64.0/33\"\n",
                "pool: \"10.233.64.0/33\": prefix length 33 is longer than 32 (line 2)",
            ),
            (
                "node-block = [\"10.233.99.0/24\", \"10.1/24\"]\n",
                "node-block[1]: \"10.1/24\": \"10.1\" is not an IPv4 address (line 1)",
            ),
            (
                "block-size = \"twenty-four\"\n",
                "block-size: \"twenty-four\": invalid type: string \"twenty-four\", expected u8 (line 1)",
            ),
            ("block-size = 300\n", "block-size: 300: invalid value"),
            ("routing = \"ospf\"\n", "routing: \"ospf\": unknown variant `ospf`"),
            ("encapsulation = \"gre\"\n", "encapsulation: \"gre\": unknown variant"),
            ("node-ip = \"10.0.0\"\n", "node-ip: \"10.0.0\": invalid IPv4"),
            ("metrics-addr = \"x\"\n", "metrics-addr: \"x\": invalid socket address"),
            ("cross-subnet = 1\n", "cross-subnet: 1: invalid type"),
            ("etcd-endpoints = \"x\"\n", "etcd-endpoints: \"x\": invalid type"),
            ("etcd-timeout-ms = -5\n", "etcd-timeout-ms: -5: invalid value"),
            ("node-nmae = \"b\"\n", "node-nmae: \"b\": unknown field `node-nmae`"),
        ] {
            let e = AgentFile::parse(file).unwrap_err();
            assert!(e.starts_with(want), "{file:?}:\n  got  {e}\n  want {want}");
        }
    }
}
