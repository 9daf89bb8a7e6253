//! VMCOREINFO text for synthetic kernels: the lines a Linux kernel writes about itself, with
//! the values of a real one (Debian 6.1 x86_64), so tests and fuzz seeds build kernels that
//! guestcore's kernel readers accept.

/// The printk ring-buffer layout lines (`SIZE(...)`, `OFFSET(...)`) of Debian's 6.1 x86_64
/// kernel: `printk_ringbuffer` with its descriptor ring at 0 and text ring at 48, 24-byte
/// descriptors, 88-byte infos.
pub const PRINTK_RING_LAYOUT: &str = "SIZE(printk_ringbuffer)=88\n\
OFFSET(printk_ringbuffer.desc_ring)=0\nOFFSET(printk_ringbuffer.text_data_ring)=48\n\
OFFSET(prb_desc_ring.count_bits)=0\nOFFSET(prb_desc_ring.descs)=8\n\
OFFSET(prb_desc_ring.infos)=16\nOFFSET(prb_desc_ring.head_id)=24\n\
OFFSET(prb_desc_ring.tail_id)=32\nSIZE(prb_desc)=24\nOFFSET(prb_desc.state_var)=0\n\
OFFSET(prb_desc.text_blk_lpos)=8\nOFFSET(prb_data_blk_lpos.begin)=0\n\
OFFSET(prb_data_blk_lpos.next)=8\nSIZE(printk_info)=88\nOFFSET(printk_info.ts_nsec)=8\n\
OFFSET(printk_info.text_len)=16\nOFFSET(prb_data_ring.size_bits)=0\n\
OFFSET(prb_data_ring.data)=8\nOFFSET(atomic_long_t.counter)=0\n";
