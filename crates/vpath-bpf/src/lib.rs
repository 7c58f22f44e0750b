//! vpath-bpf (being written)
