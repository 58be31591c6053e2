//! Tiered memory allocator.
