//! What the fuzz targets share: the sandbox the plugin front-door target runs its verbs in.

pub mod sandbox;
