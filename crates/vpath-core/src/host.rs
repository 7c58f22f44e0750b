//! Stage 1 (stub, being written).
use std::sync::Arc;
use crate::analyzer::{Config, HostId, Stats};
use crate::event::Record;
pub enum HostOutput {}
pub struct HostStage;
impl HostStage {
    pub fn new(_: HostId, _: Arc<str>, _: bool, _: Config) -> Self { HostStage }
    pub fn push(&mut self, _: &Record, _: &mut Stats, _: &mut Vec<HostOutput>) {}
    pub fn finish(&mut self, _: &mut Stats, _: &mut Vec<HostOutput>) {}
    pub fn in_flight(&self) -> usize { 0 }
}
