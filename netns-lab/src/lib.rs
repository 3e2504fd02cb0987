//! podnet-lab as a library: the lab's parts, used by the `podnet-lab` binary (its command
//! line) and by the fuzz targets (the scenario and manifest parsers).

pub mod agent_image;
pub mod agents;
pub mod apply;
pub mod block_routes;
pub mod chaos;
pub mod cluster_dns;
pub mod dns;
pub mod down;
pub mod inventory;
pub mod nodes;
pub mod outside;
pub mod pod_files;
pub mod pods;
pub mod procs;
pub mod progress;
pub mod proxy;
pub mod routers;
pub mod runtime;
pub mod scenario;
pub mod serve;
pub mod services;
pub mod services_up;
pub mod state;
pub mod stub_resolver;
pub mod up;
pub mod views;
