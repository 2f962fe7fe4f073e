//! The transport registry: transports submit a [`TransportRegistration`] with `inventory`, and
//! the runtime creates factories by name.

use crate::{FactoryPtr, TransportError};
use std::collections::BTreeMap;
use std::str::FromStr;

/// What a factory is created with: the device id and the device's properties as strings
/// (for example `io-threads`, `session`, `shm-segment-size`).
#[derive(Debug, Clone, Default)]
pub struct TransportConfig {
    /// Device id (used in socket ids).
    pub id: String,
    /// Device properties by FairMQ option name.
    pub properties: BTreeMap<String, String>,
}

impl TransportConfig {
    /// A config with an id and no properties.
    pub fn new(id: impl Into<String>) -> Self {
        TransportConfig {
            id: id.into(),
            properties: BTreeMap::new(),
        }
    }

    /// Adds a property (builder style).
    pub fn with(mut self, key: impl Into<String>, value: impl ToString) -> Self {
        self.properties.insert(key.into(), value.to_string());
        self
    }

    /// A property parsed as `T`: `Ok(None)` if absent, an error naming the option if malformed.
    pub fn get<T: FromStr>(&self, key: &str) -> Result<Option<T>, TransportError> {
        match self.properties.get(key) {
            None => Ok(None),
            Some(v) => v.parse::<T>().map(Some).map_err(|_| {
                TransportError::Other(format!(
                    "invalid value '{v}' for option --{key} ({})",
                    std::any::type_name::<T>()
                ))
            }),
        }
    }

    /// A property parsed as `T`, or `default` if absent.
    pub fn get_or<T: FromStr>(&self, key: &str, default: T) -> Result<T, TransportError> {
        Ok(self.get(key)?.unwrap_or(default))
    }
}

/// A transport's entry in the registry.
pub struct TransportRegistration {
    /// The name devices use for it (`--transport <name>`).
    pub name: &'static str,
    /// Creates a factory.
    pub create: fn(&TransportConfig) -> Result<FactoryPtr, TransportError>,
}

inventory::collect!(TransportRegistration);

/// Names of all registered transports, sorted.
pub fn available_transports() -> Vec<&'static str> {
    let mut names: Vec<_> = inventory::iter::<TransportRegistration>
        .into_iter()
        .map(|r| r.name)
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Creates a factory of the transport registered as `name`; an unknown name is an error that
/// lists the registered ones.
pub fn create_transport(
    name: &str,
    config: &TransportConfig,
) -> Result<FactoryPtr, TransportError> {
    inventory::iter::<TransportRegistration>
        .into_iter()
        .find(|r| r.name == name)
        .map(|r| (r.create)(config))
        .unwrap_or_else(|| {
            Err(TransportError::UnknownTransport {
                name: name.to_string(),
                available: available_transports()
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
            })
        })
}
