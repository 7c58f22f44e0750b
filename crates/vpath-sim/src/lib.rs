//! vpath-sim (being written)
