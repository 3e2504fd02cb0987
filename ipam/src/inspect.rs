//! Looking at the IPAM state: the admin summary behind `podnet-ipam show`, and a consistency
//! check (every allocation has its handle and every handle its allocation, no address twice).

use crate::allocator::decode;
use crate::keys;
use crate::model::{Block, HandleRecord, PoolRecord};
use crate::pool::PoolSpec;
use crate::store::Datastore;
use crate::Error;
use ipnet::Ipv4Net;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// One pool's figures.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PoolSummary {
    pub cidr: Ipv4Net,
    pub block_size: u8,
    pub strict_affinity: bool,
    pub capacity_blocks: u64,
    pub claimed_blocks: usize,
    pub used: u64,
    pub free: u64,
}

/// One block's figures.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BlockSummary {
    pub cidr: Ipv4Net,
    pub pool: Ipv4Net,
    pub node: Option<String>,
    pub used: u32,
    pub free: u32,
}

/// Pools and blocks as `show` prints them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub pools: Vec<PoolSummary>,
    pub blocks: Vec<BlockSummary>,
}

fn read_all<T: serde::de::DeserializeOwned>(
    store: &dyn Datastore,
    prefix: &str,
) -> Result<Vec<T>, Error> {
    store
        .list(prefix)?
        .kvs
        .iter()
        .map(|kv| decode(store, kv))
        .collect()
}

/// Reads pools and blocks from the store.
pub fn summary(store: &dyn Datastore) -> Result<Summary, Error> {
    let pools: Vec<PoolRecord> = read_all(store, keys::POOLS)?;
    let mut blocks: Vec<Block> = read_all(store, keys::BLOCKS)?;
    blocks.sort_by_key(|b| b.cidr);
    let pools = pools
        .into_iter()
        .map(|p| {
            let spec = PoolSpec::from_record(p)?;
            let mine = blocks.iter().filter(|b| b.pool == spec.cidr());
            let used: u64 = mine.clone().map(|b| b.allocations.len() as u64).sum();
            let total = 1u64 << (32 - spec.cidr().prefix_len());
            Ok(PoolSummary {
                cidr: spec.cidr(),
                block_size: spec.block_size(),
                strict_affinity: spec.strict_affinity(),
                capacity_blocks: spec.capacity_blocks(),
                claimed_blocks: mine.count(),
                used,
                free: total - used,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let blocks = blocks
        .iter()
        .map(|b| BlockSummary {
            cidr: b.cidr,
            pool: b.pool,
            node: b.affinity.clone(),
            used: b.allocations.len() as u32,
            free: b.free(),
        })
        .collect();
    Ok(Summary { pools, blocks })
}

impl Summary {
    /// Aligned tables for people.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut pools = vec![[
            "POOL".to_string(),
            "BLOCK SIZE".into(),
            "BLOCKS (CLAIMED/CAPACITY)".into(),
            "USED".into(),
            "FREE".into(),
            "STRICT".into(),
        ]];
        for p in &self.pools {
            pools.push([
                p.cidr.to_string(),
                format!("/{}", p.block_size),
                format!("{}/{}", p.claimed_blocks, p.capacity_blocks),
                p.used.to_string(),
                p.free.to_string(),
                p.strict_affinity.to_string(),
            ]);
        }
        table(&mut out, &pools);
        out.push('\n');
        let mut blocks = vec![[
            "BLOCK".to_string(),
            "NODE".into(),
            "USED".into(),
            "FREE".into(),
        ]];
        for b in &self.blocks {
            blocks.push([
                b.cidr.to_string(),
                b.node.clone().unwrap_or_else(|| "-".into()),
                b.used.to_string(),
                b.free.to_string(),
            ]);
        }
        table(&mut out, &blocks);
        out
    }
}

/// Writes rows as left-aligned columns separated by three spaces.
pub fn table<const N: usize>(out: &mut String, rows: &[[String; N]]) {
    let mut widths = [0; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < N {
                let _ = write!(line, "{cell:<w$}   ", w = widths[i]);
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// Every inconsistency between blocks and handles; empty when the store is sound.
pub fn verify(store: &dyn Datastore) -> Result<Vec<String>, Error> {
    let blocks: Vec<Block> = read_all(store, keys::BLOCKS)?;
    let handles: Vec<HandleRecord> = read_all(store, keys::HANDLES)?;
    let by_id: BTreeMap<&str, &HandleRecord> = handles.iter().map(|h| (h.id.as_str(), h)).collect();
    let mut problems = Vec::new();
    let mut holders: BTreeMap<std::net::Ipv4Addr, &str> = BTreeMap::new();
    for b in &blocks {
        for (ord, a) in &b.allocations {
            let addr = b.address(*ord);
            match by_id.get(a.handle.as_str()) {
                Some(h)
                    if h.block == b.cidr
                        && h.ordinal == *ord
                        && h.seq == a.seq
                        && h.address == addr => {}
                Some(_) => problems.push(format!(
                    "{addr} in {}: handle {} points elsewhere",
                    b.cidr, a.handle
                )),
                None => problems.push(format!(
                    "{addr} in {}: handle {} is missing",
                    b.cidr, a.handle
                )),
            }
            if let Some(other) = holders.insert(addr, &a.handle) {
                problems.push(format!("{addr} is held by both {other} and {}", a.handle));
            }
        }
    }
    for h in &handles {
        let owned = blocks
            .iter()
            .find(|b| b.cidr == h.block)
            .and_then(|b| b.allocations.get(&h.ordinal))
            .is_some_and(|a| *a == h.allocation());
        if !owned {
            problems.push(format!(
                "handle {} claims {} but its block does not agree",
                h.id, h.address
            ));
        }
    }
    Ok(problems)
}
