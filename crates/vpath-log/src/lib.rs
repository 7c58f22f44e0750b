//! vpath-log (being written)
