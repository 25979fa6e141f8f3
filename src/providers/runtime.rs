//! Every provider's client, built once from the configuration with one shared HTTP client. Above
//! the config and the catalog it reads; the core and the watcher use it.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::registry::Declared;
use super::{Build, Provider, ProviderId, http};
use crate::config::Config;
use crate::error::Error;
use crate::journal::Journal;

/// Every provider, built once from the configuration with one shared HTTP client.
pub struct Providers {
    map: BTreeMap<ProviderId, Arc<dyn Provider>>,
}

impl Providers {
    pub fn new(cfg: &Config, http: &http::HttpClient, journal: Journal) -> Providers {
        let map = cfg
            .providers
            .iter()
            .map(|(id, pc)| {
                let b = Build {
                    id: *id,
                    provider: pc,
                    http,
                    journal: &journal,
                    output_dir: &cfg.output_dir,
                    allowed_dirs: &cfg.allowed_dirs,
                    data_dir: &cfg.data_dir,
                    models: crate::catalog::models(),
                };
                (*id, (id.decl().build)(&b))
            })
            .collect();
        Providers { map }
    }

    pub fn get(&self, id: ProviderId) -> Result<Arc<dyn Provider>, Error> {
        self.map
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::internal(format!("provider {id} is not set up")))
    }
}
