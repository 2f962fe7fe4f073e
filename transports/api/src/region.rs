//! Unmanaged regions: large user-managed buffers that messages point into.
//!
//! The creator fills a region, builds messages over blocks of it, and learns through its
//! callback when every message built on a block has been released (possibly in another
//! process), so that it can reuse the block.

use crate::TransportError;
use std::fmt;
use std::sync::Arc;

/// Settings of a new region (FairMQ's `RegionConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionConfig {
    /// Lock the region in memory (mlock) after creation.
    pub lock: bool,
    /// Zero the region after creation.
    pub zero: bool,
    /// Remove the shared object when the creator drops the region.
    pub remove_on_destruction: bool,
    /// Flags passed to the mapping call.
    pub creation_flags: i32,
    /// Opaque user value reported in [`RegionInfo::flags`].
    pub user_flags: i64,
    /// Region size in bytes.
    pub size: usize,
    /// Size of the segment that keeps reference counts of copied region messages.
    pub rc_segment_size: usize,
    /// Non-empty: a file-backed region, file name `<path>fmq_<shmId>_rg_<id>`.
    pub path: String,
    /// Fixed region id, or `None` to get one assigned.
    pub id: Option<u16>,
    /// Milliseconds the creator keeps collecting acknowledgements when it drops the region.
    pub linger_ms: u32,
}

impl Default for RegionConfig {
    fn default() -> Self {
        RegionConfig {
            lock: false,
            zero: false,
            remove_on_destruction: true,
            creation_flags: 0,
            user_flags: 0,
            size: 0,
            rc_segment_size: 100_000_000,
            path: String::new(),
            id: None,
            linger_ms: 100,
        }
    }
}

impl RegionConfig {
    /// A default config for a region of `size` bytes.
    pub fn with_size(size: usize) -> Self {
        RegionConfig {
            size,
            ..Self::default()
        }
    }
}

/// One released block of a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionBlock {
    /// Address of the block in the creator's mapping.
    pub ptr: usize,
    /// Offset of the block from the region start.
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
    /// The hint given when the message was created.
    pub hint: u64,
}

/// A callback receiving one released block.
pub type SingleBlockFn = Arc<dyn Fn(RegionBlock) + Send + Sync>;
/// A callback receiving a batch of released blocks.
pub type BulkBlockFn = Arc<dyn Fn(&[RegionBlock]) + Send + Sync>;

/// How a region's creator learns about released blocks.
#[derive(Clone, Default)]
pub enum RegionCallback {
    /// No callback: releases are not reported (and do not pile up).
    #[default]
    None,
    /// Called once per released block.
    Single(SingleBlockFn),
    /// Called with batches of released blocks.
    Bulk(BulkBlockFn),
}

impl RegionCallback {
    /// A per-block callback.
    pub fn single(f: impl Fn(RegionBlock) + Send + Sync + 'static) -> Self {
        RegionCallback::Single(Arc::new(f))
    }
    /// A batch callback.
    pub fn bulk(f: impl Fn(&[RegionBlock]) + Send + Sync + 'static) -> Self {
        RegionCallback::Bulk(Arc::new(f))
    }
    /// Delivers `blocks` through whichever callback this is.
    pub fn deliver(&self, blocks: &[RegionBlock]) {
        match self {
            RegionCallback::None => {}
            RegionCallback::Single(f) => blocks.iter().for_each(|b| f(*b)),
            RegionCallback::Bulk(f) => {
                if !blocks.is_empty() {
                    f(blocks)
                }
            }
        }
    }
}

impl fmt::Debug for RegionCallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RegionCallback::None => "RegionCallback::None",
            RegionCallback::Single(_) => "RegionCallback::Single",
            RegionCallback::Bulk(_) => "RegionCallback::Bulk",
        })
    }
}

/// What happened to a region or segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionEvent {
    /// It was created (or first seen).
    Created,
    /// It was destroyed.
    Destroyed,
    /// Only this process knows of it.
    LocalOnly,
}

impl fmt::Display for RegionEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RegionEvent::Created => "created",
            RegionEvent::Destroyed => "destroyed",
            RegionEvent::LocalOnly => "local_only",
        })
    }
}

/// A region or managed segment, as reported by events and [`crate::TransportFactory::region_info`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionInfo {
    /// True for managed segments, false for unmanaged regions.
    pub managed: bool,
    /// Region or segment id.
    pub id: u16,
    /// Address in this process (0 if not mapped).
    pub ptr: usize,
    /// Size in bytes.
    pub size: usize,
    /// The region's user flags.
    pub flags: i64,
    /// What happened.
    pub event: RegionEvent,
}

/// Receives region events.
pub type RegionEventCallback = Arc<dyn Fn(RegionInfo) + Send + Sync>;

/// A region of memory owned by its creator; messages built on it are zero-copy where the
/// transport allows.
pub trait UnmanagedRegion: Send + Sync {
    /// Region id.
    fn id(&self) -> u16;
    /// Size in bytes.
    fn size(&self) -> usize;
    /// Start address in this process, for building pointers; use [`write_at`](Self::write_at)
    /// and [`read_at`](Self::read_at) for safe access.
    fn base_address(&self) -> usize;
    /// Copies `bytes` into the region at `offset`.
    fn write_at(&self, offset: usize, bytes: &[u8]) -> Result<(), TransportError>;
    /// Copies bytes from the region at `offset` into `out`.
    fn read_at(&self, offset: usize, out: &mut [u8]) -> Result<(), TransportError>;
    /// Milliseconds acknowledgements are still collected after the region is dropped.
    fn linger_ms(&self) -> u32;
    /// Changes the linger time.
    fn set_linger_ms(&self, ms: u32);
    /// Name of the transport that made it.
    fn transport(&self) -> &'static str;
    /// Upcast for transports.
    fn as_any(&self) -> &dyn std::any::Any;
}

/// A shared handle to a region; the region is destroyed when the last handle is dropped.
pub type RegionPtr = Arc<dyn UnmanagedRegion>;
