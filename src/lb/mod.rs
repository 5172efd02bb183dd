//! Installing certificates on the load balancer: upload, swap onto the target
//! HTTPS proxies, verify, delete what was replaced.

pub mod naming;
