//! Stage 2 (stub, being written).
use std::collections::VecDeque;
use crate::analyzer::{Config, HostId, Stats};
use crate::host::HostOutput;
use crate::path::Path;
pub struct Stitch;
impl Stitch {
    pub fn new(_: Config) -> Self { Stitch }
    pub fn add_host(&mut self, _: HostId) {}
    pub fn push(&mut self, _: HostId, o: HostOutput, _: &mut Stats, _: &mut VecDeque<Path>) { match o {} }
    pub fn end_host(&mut self, _: HostId, _: &mut Stats, _: &mut VecDeque<Path>) {}
    pub fn finish(&mut self, _: &mut Stats, _: &mut VecDeque<Path>) {}
    pub fn in_flight(&self) -> usize { 0 }
}
