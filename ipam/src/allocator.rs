//! Allocation, release and GC of addresses by handle, each one atomic datastore update.
//!
//! Order of choice on node N (Calico's): the lowest free address in N's affine blocks; else a
//! new block claimed for N (its pinned blocks first, then the lowest free block of the pool not
//! pinned to another node); else, unless the pool is strict, the lowest free address in another
//! node's block; else "pool exhausted".

use crate::keys;
use crate::model::{Affinity, Block, HandleRecord, PoolRecord};
use crate::pool::PoolSpec;
use crate::store::{update, Datastore, Direct, KeyValue, Reader, StoreError, Txn};
use crate::{validate_name, validate_node_name, Error};
use ipnet::Ipv4Net;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{BTreeSet, HashSet};
use std::net::Ipv4Addr;

/// The handle of a pod attachment: `podnet.<containerID>.<ifname>`.
pub fn pod_handle(container_id: &str, ifname: &str) -> String {
    format!("{POD_HANDLE_PREFIX}{container_id}.{ifname}")
}

/// The handle of a node's tunnel address: `tunnel.<node>`.
pub fn tunnel_handle(node: &str) -> String {
    format!("tunnel.{node}")
}

const POD_HANDLE_PREFIX: &str = "podnet.";

/// The pod handles held in `store`, any pool and any node, in key order (tunnel handles left
/// out).
pub fn pod_handles(store: &dyn Datastore) -> Result<Vec<String>, Error> {
    Ok(store
        .list(keys::HANDLES)?
        .kvs
        .into_iter()
        .filter_map(|kv| kv.key.strip_prefix(keys::HANDLES).map(str::to_string))
        .filter(|h| h.starts_with(POD_HANDLE_PREFIX))
        .collect())
}

/// What a GC pass did: the handles it released and the ones it could not.
#[derive(Debug, Default)]
pub struct GcReport {
    pub released: Vec<(String, Ipv4Addr)>,
    pub errors: Vec<(String, Error)>,
}

/// IPAM over one pool in one datastore.
pub struct Ipam<'a> {
    store: &'a dyn Datastore,
    pool: PoolSpec,
}

/// Where a new address comes from.
enum Source {
    /// A free ordinal in an existing block.
    Existing(Block, u32),
    /// A block to claim for the node; its first address.
    Claim(Ipv4Net),
}

impl<'a> Ipam<'a> {
    pub fn new(store: &'a dyn Datastore, pool: PoolSpec) -> Ipam<'a> {
        Ipam { store, pool }
    }

    pub fn pool(&self) -> &PoolSpec {
        &self.pool
    }

    /// Gives `handle` an address on `node`. Fails with `AlreadyAllocated` if the handle holds
    /// one already, and with `PoolExhausted` when nothing is free to this node.
    pub fn allocate(&self, node: &str, handle: &str) -> Result<Ipv4Addr, Error> {
        self.allocate_inner(node, handle, false)
    }

    /// The node's tunnel address: the one it holds, or a new one (its block's first address
    /// when the tunnel is allocated before any pod, as the agent does at start).
    pub fn allocate_tunnel(&self, node: &str) -> Result<Ipv4Addr, Error> {
        self.allocate_inner(node, &tunnel_handle(node), true)
    }

    fn allocate_inner(&self, node: &str, handle: &str, reuse: bool) -> Result<Ipv4Addr, Error> {
        validate_node_name(node)?;
        validate_name("handle", handle)?;
        let mut got = None;
        update(self.store, |r| {
            let mut txn = Txn::default();
            let pool = self.ensure_pool(r, &mut txn)?;
            if let Some(kv) = r.get(&keys::handle(handle))? {
                if reuse {
                    let held: HandleRecord = decode(self.store, &kv)?;
                    got = Some(held.address);
                    return Ok(Txn::default());
                }
                return Err(Error::AlreadyAllocated(handle.to_string()));
            }
            let (mut block, ordinal) = match choose(self.store, r, &pool, node)? {
                Source::Existing(block, ordinal) => (block, ordinal),
                Source::Claim(cidr) => {
                    let affinity = Affinity {
                        node: node.to_string(),
                        block: cidr,
                        pool: pool.cidr(),
                    };
                    txn.put(keys::affinity(node, &cidr), encode(&affinity));
                    (Block::new(cidr, pool.cidr(), node), 0)
                }
            };
            let seq = block.take(ordinal, handle);
            let record = HandleRecord {
                id: handle.to_string(),
                node: node.to_string(),
                pool: pool.cidr(),
                block: block.cidr,
                ordinal,
                seq,
                address: block.address(ordinal),
            };
            txn.put(keys::block(&block.cidr), encode(&block));
            txn.put(keys::handle(handle), encode(&record));
            got = Some(record.address);
            Ok(txn)
        })?;
        Ok(got.expect("a committed plan set the address"))
    }

    /// Frees what `handle` holds. Releasing a handle that holds nothing is not an error
    /// (returns `None`). A handle whose allocation was already given to someone else (stale
    /// sequence number) is removed without touching the new holder.
    pub fn release(&self, handle: &str) -> Result<Option<Ipv4Addr>, Error> {
        let mut freed = None;
        update::<Error, _>(self.store, |r| {
            freed = None;
            let mut txn = Txn::default();
            let Some(kv) = r.get(&keys::handle(handle))? else {
                return Ok(txn);
            };
            let held: HandleRecord = decode(self.store, &kv)?;
            txn.delete(keys::handle(handle));
            if let Some(bkv) = r.get(&keys::block(&held.block))? {
                let mut block: Block = decode(self.store, &bkv)?;
                if block.allocations.get(&held.ordinal) == Some(&held.allocation()) {
                    block.allocations.remove(&held.ordinal);
                    txn.put(keys::block(&block.cidr), encode(&block));
                    freed = Some(held.address);
                }
            }
            Ok(txn)
        })?;
        Ok(freed)
    }

    /// What `handle` holds, if anything.
    pub fn lookup(&self, handle: &str) -> Result<Option<HandleRecord>, Error> {
        self.store
            .get(&keys::handle(handle))?
            .map(|kv| decode(self.store, &kv))
            .transpose()
    }

    /// Releases every pod handle of `node` in this pool that is not in `valid`, carrying on
    /// past errors. Tunnel handles are never touched.
    pub fn gc(&self, node: &str, valid: &HashSet<String>) -> Result<GcReport, Error> {
        let mut report = GcReport::default();
        for kv in self.store.list(keys::HANDLES)?.kvs {
            let held: HandleRecord = match decode(self.store, &kv) {
                Ok(h) => h,
                Err(e) => {
                    report.errors.push((kv.key, e));
                    continue;
                }
            };
            let ours = held.node == node && held.pool == self.pool.cidr();
            if !ours || !held.id.starts_with(POD_HANDLE_PREFIX) || valid.contains(&held.id) {
                continue;
            }
            match self.release(&held.id) {
                Ok(Some(ip)) => report.released.push((held.id, ip)),
                Ok(None) => {}
                Err(e) => report.errors.push((held.id, e)),
            }
        }
        Ok(report)
    }

    /// A block affine to `node`: its lowest one, or a newly claimed one (pinned blocks first).
    /// No address is allocated. Fails with `PoolExhausted` when no block is left to claim.
    pub fn ensure_block(&self, node: &str) -> Result<Ipv4Net, Error> {
        validate_node_name(node)?;
        let mut got = None;
        update::<Error, _>(self.store, |r| {
            let mut txn = Txn::default();
            let pool = self.ensure_pool(r, &mut txn)?;
            if let Some((block, _)) = affine_blocks(self.store, r, &pool, node)?
                .into_iter()
                .next()
            {
                got = Some(block.cidr);
                return Ok(txn);
            }
            let blocks = all_blocks(self.store, r)?;
            let cidr = claimable(r, &pool, node, &blocks)?.ok_or_else(|| exhausted(&pool, node))?;
            let affinity = Affinity {
                node: node.to_string(),
                block: cidr,
                pool: pool.cidr(),
            };
            txn.put(keys::affinity(node, &cidr), encode(&affinity));
            txn.put(
                keys::block(&cidr),
                encode(&Block::new(cidr, pool.cidr(), node)),
            );
            got = Some(cidr);
            Ok(txn)
        })?;
        Ok(got.expect("a committed plan set the block"))
    }

    /// A node leaves: its tunnel address is released and its blocks lose their affinity
    /// (empty blocks are deleted; blocks still holding pods stay, with no node). Returns the
    /// blocks it held.
    pub fn release_node(&self, node: &str) -> Result<Vec<Ipv4Net>, Error> {
        self.release(&tunnel_handle(node))?;
        let mut released = Vec::new();
        update::<Error, _>(self.store, |r| {
            released.clear();
            let mut txn = Txn::default();
            let pool = self.ensure_pool(r, &mut Txn::default())?;
            for (mut block, key) in affine_blocks(self.store, r, &pool, node)? {
                txn.delete(key);
                if block.allocations.is_empty() {
                    txn.delete(keys::block(&block.cidr));
                } else {
                    block.affinity = None;
                    txn.put(keys::block(&block.cidr), encode(&block));
                }
                released.push(block.cidr);
            }
            Ok(txn)
        })?;
        Ok(released)
    }

    /// Whether an allocation on `node` would find an address now (CNI STATUS).
    pub fn has_room(&self, node: &str) -> Result<bool, Error> {
        let mut r = Direct(self.store);
        let mut scratch = Txn::default();
        let pool = self.ensure_pool(&mut r, &mut scratch)?;
        match choose(self.store, &mut r, &pool, node) {
            Ok(_) => Ok(true),
            Err(Error::PoolExhausted { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Reads the stored pool, merges this config into it, and queues the write if it changed.
    /// A new pool must not overlap a pool already stored.
    fn ensure_pool(&self, r: &mut dyn Reader, txn: &mut Txn) -> Result<PoolSpec, Error> {
        let key = keys::pool(&self.pool.cidr());
        let merged = match r.get(&key)? {
            Some(kv) => {
                let stored: PoolRecord = decode(self.store, &kv)?;
                let merged = self.pool.merged_with(&stored)?;
                if *merged.record() == stored {
                    return Ok(merged);
                }
                merged
            }
            None => {
                for kv in r.list(keys::POOLS)? {
                    let other: PoolRecord = decode(self.store, &kv)?;
                    if other.cidr == self.pool.cidr() {
                        // Created since our read of its key: that read's compare fails the commit.
                        continue;
                    }
                    if other.cidr.contains(&self.pool.cidr())
                        || self.pool.cidr().contains(&other.cidr)
                    {
                        return Err(Error::PoolOverlap {
                            pool: self.pool.cidr(),
                            other: other.cidr,
                        });
                    }
                }
                self.pool.clone()
            }
        };
        txn.put(key, encode(merged.record()));
        Ok(merged)
    }
}

/// Picks where `node`'s next address comes from (see the module doc for the order).
fn choose(
    store: &dyn Datastore,
    r: &mut dyn Reader,
    pool: &PoolSpec,
    node: &str,
) -> Result<Source, Error> {
    // 1. The node's own blocks, lowest first.
    for (block, _) in affine_blocks(store, r, pool, node)? {
        if let Some(ord) = block.first_free() {
            return Ok(Source::Existing(block, ord));
        }
    }
    // 2. Claim a block.
    let blocks = all_blocks(store, r)?;
    if let Some(cidr) = claimable(r, pool, node, &blocks)? {
        return Ok(Source::Claim(cidr));
    }
    // 3. Borrow from another node's block.
    if !pool.strict_affinity() {
        let mut others: Vec<&Block> = blocks
            .iter()
            .filter(|b| b.pool == pool.cidr() && b.affinity.as_deref() != Some(node))
            .collect();
        others.sort_by_key(|b| b.cidr);
        for b in others {
            if let Some(ord) = b.first_free() {
                return Ok(Source::Existing(b.clone(), ord));
            }
        }
    }
    Err(exhausted(pool, node))
}

fn exhausted(pool: &PoolSpec, node: &str) -> Error {
    Error::PoolExhausted {
        pool: pool.cidr(),
        node: node.to_string(),
        strict: pool.strict_affinity(),
    }
}

/// The node's blocks in this pool, lowest first, with their affinity records' keys.
fn affine_blocks(
    store: &dyn Datastore,
    r: &mut dyn Reader,
    pool: &PoolSpec,
    node: &str,
) -> Result<Vec<(Block, String)>, Error> {
    let mut affine: Vec<(Affinity, String)> = r
        .list(&keys::node_affinities(node))?
        .iter()
        .map(|kv| decode(store, kv).map(|a| (a, kv.key.clone())))
        .collect::<Result<Vec<_>, Error>>()?;
    affine.retain(|(a, _)| a.pool == pool.cidr());
    affine.sort_by_key(|(a, _)| a.block);
    let mut out = Vec::new();
    for (a, key) in affine {
        if let Some(kv) = r.get(&keys::block(&a.block))? {
            let block: Block = decode(store, &kv)?;
            if block.affinity.as_deref() == Some(node) {
                out.push((block, key));
            }
        }
    }
    Ok(out)
}

fn all_blocks(store: &dyn Datastore, r: &mut dyn Reader) -> Result<Vec<Block>, Error> {
    r.list(keys::BLOCKS)?
        .iter()
        .map(|kv| decode(store, kv))
        .collect()
}

/// The block `node` would claim next: its pinned blocks first, then the lowest block of the
/// pool not pinned to another node and not overlapping a stored block.
fn claimable(
    r: &mut dyn Reader,
    pool: &PoolSpec,
    node: &str,
    blocks: &[Block],
) -> Result<Option<Ipv4Net>, Error> {
    let taken: BTreeSet<Ipv4Net> = blocks.iter().map(|b| b.cidr).collect();
    let candidate = pool
        .pinned_to(node)
        .iter()
        .copied()
        .chain(pool.blocks().filter(|b| pool.pinned_owner(b).is_none()))
        .find(|b| !taken.contains(b) && !overlaps_any(b, &taken));
    match candidate {
        // Read it (absent) so an optimistic commit fails if someone claims it first.
        Some(cidr) if r.get(&keys::block(&cidr))?.is_none() => Ok(Some(cidr)),
        _ => Ok(None),
    }
}

/// True if `b` overlaps a stored block of another size (left by an older pool config).
fn overlaps_any(b: &Ipv4Net, taken: &BTreeSet<Ipv4Net>) -> bool {
    taken.iter().any(|t| t.contains(b) || b.contains(t))
}

pub(crate) fn decode<T: DeserializeOwned>(
    store: &dyn Datastore,
    kv: &KeyValue,
) -> Result<T, Error> {
    serde_json::from_str(&kv.value).map_err(|source| {
        Error::Store(StoreError::Corrupt {
            path: store.describe(),
            key: kv.key.clone(),
            source,
        })
    })
}

fn encode<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("IPAM records always serialize")
}
