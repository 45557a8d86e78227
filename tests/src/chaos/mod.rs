//! Faults on purpose: a TCP proxy that cuts a dependency off ([`ChaosProxy`]), a balancer over
//! killable backend instances ([`balancer`]), a launch-day history of webhooks ([`history`]),
//! and the chaos run that puts them together and checks the result against `simulate` ([`run`]).

pub mod balancer;
pub mod history;
mod proxy;
pub mod run;

pub use proxy::ChaosProxy;
