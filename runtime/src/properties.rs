//! The typed key/value property store of spec §7.6 (FairMQ `ProgOptions`/`Properties`).
//!
//! Every CLI option and every channel setting (`chans.<name>.<i>.<prop>`) is a property.
//! Values keep the type they were declared with ([`PropertyValue`]), reads are exact-type
//! ([`Properties::get`] fails on a mismatch, like FairMQ's `any_cast`), and writers notify
//! typed and as-string subscribers. [`Properties`] is thread-safe and cheap to clone: clones
//! share one store.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use regex::Regex;

/// Errors of the property store.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PropertyError {
    /// The key does not exist (FairMQ's `PropertyNotFoundError`).
    #[error("Config has no key: {0}")]
    NotFound(String),
    /// The key exists, but holds a value of another type than requested.
    #[error(
        "property '{key}' holds a value of type '{actual}', but type '{expected}' was requested"
    )]
    TypeMismatch {
        /// The property key.
        key: String,
        /// The requested type's FairMQ label.
        expected: &'static str,
        /// The stored type's FairMQ label.
        actual: &'static str,
    },
    /// An update was refused because some keys do not exist; nothing was changed.
    #[error("cannot update properties: Config has no key: {}; nothing was changed (use set to add new keys)", .0.join(", "))]
    UpdateMissingKeys(Vec<String>),
    /// A string could not be converted to the requested property type.
    #[error("cannot convert '{value}' to a value of type '{expected}'")]
    Parse {
        /// The text that was given.
        value: String,
        /// The target type's FairMQ label.
        expected: &'static str,
    },
    /// The pattern passed to [`Properties::get_matching`] is not a valid regular expression.
    #[error("invalid regular expression '{pattern}': {message}")]
    InvalidRegex {
        /// The pattern as given.
        pattern: String,
        /// The regex engine's explanation.
        message: String,
    },
}

/// The type of a property value. [`label`](Self::label) gives FairMQ's type names as used
/// in the configuration printout (§2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PropertyType {
    /// `string`
    String,
    /// `bool`
    Bool,
    /// `int` (32 bit)
    I32,
    /// `long` (64 bit)
    I64,
    /// `unsigned short`
    U16,
    /// `unsigned int`
    U32,
    /// `unsigned long` (FairMQ's `size_t`)
    U64,
    /// `float`
    F32,
    /// `double`
    F64,
    /// `vector<string>`
    Strings,
}

impl PropertyType {
    /// FairMQ's label for this type, e.g. `unsigned long`, `vector<string>`.
    pub fn label(self) -> &'static str {
        match self {
            PropertyType::String => "string",
            PropertyType::Bool => "bool",
            PropertyType::I32 => "int",
            PropertyType::I64 => "long",
            PropertyType::U16 => "unsigned short",
            PropertyType::U32 => "unsigned int",
            PropertyType::U64 => "unsigned long",
            PropertyType::F32 => "float",
            PropertyType::F64 => "double",
            PropertyType::Strings => "vector<string>",
        }
    }

    /// Converts text to a value of this type. Numbers are parsed after trimming spaces;
    /// booleans accept `true`, `false`, `1`, `0`; `vector<string>` splits on `,` (each
    /// element trimmed; the empty string gives an empty vector).
    pub fn parse_value(self, text: &str) -> Result<PropertyValue, PropertyError> {
        let err = || PropertyError::Parse {
            value: text.to_owned(),
            expected: self.label(),
        };
        let t = text.trim();
        Ok(match self {
            PropertyType::String => PropertyValue::String(text.to_owned()),
            PropertyType::Bool => PropertyValue::Bool(parse_bool(t).ok_or_else(err)?),
            PropertyType::I32 => PropertyValue::I32(t.parse().map_err(|_| err())?),
            PropertyType::I64 => PropertyValue::I64(t.parse().map_err(|_| err())?),
            PropertyType::U16 => PropertyValue::U16(t.parse().map_err(|_| err())?),
            PropertyType::U32 => PropertyValue::U32(t.parse().map_err(|_| err())?),
            PropertyType::U64 => PropertyValue::U64(t.parse().map_err(|_| err())?),
            PropertyType::F32 => PropertyValue::F32(t.parse().map_err(|_| err())?),
            PropertyType::F64 => PropertyValue::F64(t.parse().map_err(|_| err())?),
            PropertyType::Strings => PropertyValue::Strings(if t.is_empty() {
                Vec::new()
            } else {
                text.split(',').map(|s| s.trim().to_owned()).collect()
            }),
        })
    }
}

impl fmt::Display for PropertyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Parses FairMQ's boolean spellings `true`, `false`, `1`, `0`.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// A typed property value.
#[derive(Debug, Clone, PartialEq)]
pub enum PropertyValue {
    /// `string`
    String(String),
    /// `bool`
    Bool(bool),
    /// `int`
    I32(i32),
    /// `long`
    I64(i64),
    /// `unsigned short`
    U16(u16),
    /// `unsigned int`
    U32(u32),
    /// `unsigned long`
    U64(u64),
    /// `float`
    F32(f32),
    /// `double`
    F64(f64),
    /// `vector<string>`
    Strings(Vec<String>),
}

impl PropertyValue {
    /// The value's type.
    pub fn property_type(&self) -> PropertyType {
        match self {
            PropertyValue::String(_) => PropertyType::String,
            PropertyValue::Bool(_) => PropertyType::Bool,
            PropertyValue::I32(_) => PropertyType::I32,
            PropertyValue::I64(_) => PropertyType::I64,
            PropertyValue::U16(_) => PropertyType::U16,
            PropertyValue::U32(_) => PropertyType::U32,
            PropertyValue::U64(_) => PropertyType::U64,
            PropertyValue::F32(_) => PropertyType::F32,
            PropertyValue::F64(_) => PropertyType::F64,
            PropertyValue::Strings(_) => PropertyType::Strings,
        }
    }

    /// FairMQ's label of the value's type, e.g. `int`, `unsigned long`, `vector<string>`.
    pub fn type_name(&self) -> &'static str {
        self.property_type().label()
    }

    /// `true` for an empty string or an empty vector.
    pub fn is_empty(&self) -> bool {
        match self {
            PropertyValue::String(s) => s.is_empty(),
            PropertyValue::Strings(v) => v.is_empty(),
            _ => false,
        }
    }
}

impl fmt::Display for PropertyValue {
    /// The as-string form: booleans as `true`/`false`, vectors joined with `, `.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PropertyValue::String(v) => f.write_str(v),
            PropertyValue::Bool(v) => write!(f, "{v}"),
            PropertyValue::I32(v) => write!(f, "{v}"),
            PropertyValue::I64(v) => write!(f, "{v}"),
            PropertyValue::U16(v) => write!(f, "{v}"),
            PropertyValue::U32(v) => write!(f, "{v}"),
            PropertyValue::U64(v) => write!(f, "{v}"),
            PropertyValue::F32(v) => write!(f, "{v}"),
            PropertyValue::F64(v) => write!(f, "{v}"),
            PropertyValue::Strings(v) => f.write_str(&v.join(", ")),
        }
    }
}

impl From<&str> for PropertyValue {
    fn from(v: &str) -> Self {
        PropertyValue::String(v.to_owned())
    }
}

impl From<Vec<&str>> for PropertyValue {
    fn from(v: Vec<&str>) -> Self {
        PropertyValue::Strings(v.into_iter().map(str::to_owned).collect())
    }
}

/// A Rust type that maps to exactly one [`PropertyType`]; used by the typed accessors
/// [`Properties::get`] and [`Properties::subscribe`].
pub trait PropertyKind: Sized + Send + Sync + 'static {
    /// The property type this Rust type corresponds to.
    const TYPE: PropertyType;
    /// Extracts the value if it has exactly this type.
    fn from_value(value: &PropertyValue) -> Option<Self>;
    /// Wraps the value.
    fn into_value(self) -> PropertyValue;
}

macro_rules! property_kind {
    ($t:ty, $variant:ident) => {
        impl PropertyKind for $t {
            const TYPE: PropertyType = PropertyType::$variant;
            fn from_value(value: &PropertyValue) -> Option<Self> {
                match value {
                    PropertyValue::$variant(v) => Some(v.clone()),
                    _ => None,
                }
            }
            fn into_value(self) -> PropertyValue {
                PropertyValue::$variant(self)
            }
        }

        impl From<$t> for PropertyValue {
            fn from(v: $t) -> Self {
                PropertyValue::$variant(v)
            }
        }

        impl TryFrom<PropertyValue> for $t {
            type Error = PropertyValue;
            /// Unwraps the value if it has exactly this type; otherwise returns it back.
            fn try_from(value: PropertyValue) -> Result<Self, PropertyValue> {
                match value {
                    PropertyValue::$variant(v) => Ok(v),
                    other => Err(other),
                }
            }
        }
    };
}

property_kind!(String, String);
property_kind!(bool, Bool);
property_kind!(i32, I32);
property_kind!(i64, I64);
property_kind!(u16, U16);
property_kind!(u32, U32);
property_kind!(u64, U64);
property_kind!(f32, F32);
property_kind!(f64, F64);
property_kind!(Vec<String>, Strings);

/// Where a property's value came from, for the configuration printout (§2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The option's default value was used.
    Default,
    /// Given on the command line, in a config file, or set by code.
    Provided,
    /// Declared, but no value was given.
    Empty,
}

impl Origin {
    /// The printout label: `[default]`, `[provided]` or `[empty]`.
    pub fn label(self) -> &'static str {
        match self {
            Origin::Default => "[default]",
            Origin::Provided => "[provided]",
            Origin::Empty => "[empty]",
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// One property as listed by [`Properties::describe`].
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyInfo {
    /// The key.
    pub key: String,
    /// The value.
    pub value: PropertyValue,
    /// Where the value came from.
    pub origin: Origin,
}

#[derive(Debug, Clone)]
struct Entry {
    value: PropertyValue,
    origin: Origin,
}

type ValueCallback = Arc<dyn Fn(&str, &PropertyValue) + Send + Sync + 'static>;
type StringCallback = Arc<dyn Fn(&str, &str) + Send + Sync + 'static>;

struct TypedSubscriber {
    id: String,
    ty: PropertyType,
    callback: ValueCallback,
}

#[derive(Default)]
struct Subscribers {
    typed: Vec<TypedSubscriber>,
    as_string: Vec<(String, StringCallback)>,
}

#[derive(Default)]
struct Inner {
    map: RwLock<BTreeMap<String, Entry>>,
    subscribers: Mutex<Subscribers>,
}

/// The property store. Thread-safe; clones share the same store.
///
/// Subscribers are called after the value is stored, outside the store's locks, in the
/// thread of the writer: first the typed subscribers of the value's type, then the
/// as-string subscribers, each in subscription order.
#[derive(Clone, Default)]
pub struct Properties {
    inner: Arc<Inner>,
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let map = self.read();
        f.debug_map()
            .entries(map.iter().map(|(k, e)| (k, &e.value)))
            .finish()
    }
}

impl Properties {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        self.inner
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<String, Entry>> {
        self.inner
            .map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn subscribers(&self) -> MutexGuard<'_, Subscribers> {
        self.inner
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    // ----- writing -----

    /// Stores `value` under `key` (origin [`Origin::Provided`]), replacing any previous
    /// value of any type, and notifies subscribers.
    pub fn set(&self, key: impl Into<String>, value: impl Into<PropertyValue>) {
        self.set_with_origin(key, value, Origin::Provided);
    }

    /// Stores a default value (origin [`Origin::Default`]) and notifies subscribers.
    pub fn set_default(&self, key: impl Into<String>, value: impl Into<PropertyValue>) {
        self.set_with_origin(key, value, Origin::Default);
    }

    /// Stores `value` with an explicit origin and notifies subscribers.
    pub fn set_with_origin(
        &self,
        key: impl Into<String>,
        value: impl Into<PropertyValue>,
        origin: Origin,
    ) {
        let key = key.into();
        let value = value.into();
        self.write().insert(
            key.clone(),
            Entry {
                value: value.clone(),
                origin,
            },
        );
        self.notify(&[(key, value)]);
    }

    /// Stores several values at once (origin [`Origin::Provided`]), then notifies
    /// subscribers for each of them in the given order.
    pub fn set_many<K, V, I>(&self, items: I)
    where
        K: Into<String>,
        V: Into<PropertyValue>,
        I: IntoIterator<Item = (K, V)>,
    {
        let items: Vec<(String, PropertyValue)> = items
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        {
            let mut map = self.write();
            for (k, v) in &items {
                map.insert(
                    k.clone(),
                    Entry {
                        value: v.clone(),
                        origin: Origin::Provided,
                    },
                );
            }
        }
        self.notify(&items);
    }

    /// Replaces the value of an existing key; fails with [`PropertyError::NotFound`] if the
    /// key does not exist. The origin becomes [`Origin::Provided`].
    pub fn update(
        &self,
        key: impl Into<String>,
        value: impl Into<PropertyValue>,
    ) -> Result<(), PropertyError> {
        let key = key.into();
        let value = value.into();
        {
            let mut map = self.write();
            let entry = map
                .get_mut(&key)
                .ok_or_else(|| PropertyError::NotFound(key.clone()))?;
            *entry = Entry {
                value: value.clone(),
                origin: Origin::Provided,
            };
        }
        self.notify(&[(key, value)]);
        Ok(())
    }

    /// Replaces the values of several existing keys, all or nothing: if any key does not
    /// exist, nothing is changed and the error lists the missing keys.
    pub fn update_many<K, V, I>(&self, items: I) -> Result<(), PropertyError>
    where
        K: Into<String>,
        V: Into<PropertyValue>,
        I: IntoIterator<Item = (K, V)>,
    {
        let items: Vec<(String, PropertyValue)> = items
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        {
            let mut map = self.write();
            let missing: Vec<String> = items
                .iter()
                .filter(|(k, _)| !map.contains_key(k))
                .map(|(k, _)| k.clone())
                .collect();
            if !missing.is_empty() {
                return Err(PropertyError::UpdateMissingKeys(missing));
            }
            for (k, v) in &items {
                map.insert(
                    k.clone(),
                    Entry {
                        value: v.clone(),
                        origin: Origin::Provided,
                    },
                );
            }
        }
        self.notify(&items);
        Ok(())
    }

    /// Removes a key. Returns whether it existed. Subscribers are not notified.
    pub fn delete(&self, key: &str) -> bool {
        self.write().remove(key).is_some()
    }

    fn notify(&self, items: &[(String, PropertyValue)]) {
        for (key, value) in items {
            let (typed, as_string): (Vec<ValueCallback>, Vec<StringCallback>) = {
                let subs = self.subscribers();
                let ty = value.property_type();
                (
                    subs.typed
                        .iter()
                        .filter(|s| s.ty == ty)
                        .map(|s| Arc::clone(&s.callback))
                        .collect(),
                    subs.as_string
                        .iter()
                        .map(|(_, cb)| Arc::clone(cb))
                        .collect(),
                )
            };
            for cb in typed {
                cb(key, value);
            }
            if !as_string.is_empty() {
                let text = value.to_string();
                for cb in as_string {
                    cb(key, &text);
                }
            }
        }
    }

    // ----- reading -----

    /// The value of `key` as `T`. Errors: [`PropertyError::NotFound`]
    /// (`Config has no key: <key>`) or [`PropertyError::TypeMismatch`] naming key, requested
    /// and stored type.
    pub fn get<T: PropertyKind>(&self, key: &str) -> Result<T, PropertyError> {
        let map = self.read();
        let entry = map
            .get(key)
            .ok_or_else(|| PropertyError::NotFound(key.to_owned()))?;
        T::from_value(&entry.value).ok_or_else(|| PropertyError::TypeMismatch {
            key: key.to_owned(),
            expected: T::TYPE.label(),
            actual: entry.value.type_name(),
        })
    }

    /// The value of `key` as `T`, or `default` if the key does not exist. A value of another
    /// type is still an error.
    pub fn get_or<T: PropertyKind>(&self, key: &str, default: T) -> Result<T, PropertyError> {
        match self.get(key) {
            Err(PropertyError::NotFound(_)) => Ok(default),
            other => other,
        }
    }

    /// The untyped value of `key`.
    pub fn get_value(&self, key: &str) -> Result<PropertyValue, PropertyError> {
        self.read()
            .get(key)
            .map(|e| e.value.clone())
            .ok_or_else(|| PropertyError::NotFound(key.to_owned()))
    }

    /// The value of `key` converted to a string (see [`PropertyValue`]'s `Display`).
    pub fn get_as_string(&self, key: &str) -> Result<String, PropertyError> {
        self.get_value(key).map(|v| v.to_string())
    }

    /// The value of `key` as a string, or `default` if the key does not exist.
    pub fn get_as_string_or(&self, key: &str, default: &str) -> String {
        self.get_as_string(key)
            .unwrap_or_else(|_| default.to_owned())
    }

    /// The type of the value stored under `key`.
    pub fn property_type(&self, key: &str) -> Option<PropertyType> {
        self.read().get(key).map(|e| e.value.property_type())
    }

    /// The origin of the value stored under `key`.
    pub fn origin(&self, key: &str) -> Option<Origin> {
        self.read().get(key).map(|e| e.origin)
    }

    /// `true` if `key` exists.
    pub fn contains(&self, key: &str) -> bool {
        self.read().contains_key(key)
    }

    /// 1 if `key` exists, else 0 (FairMQ `Count`).
    pub fn count(&self, key: &str) -> usize {
        usize::from(self.contains(key))
    }

    /// Number of properties.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// `true` if the store is empty.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// All keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// All properties whose key starts with `prefix`, sorted by key.
    pub fn get_starting_with(&self, prefix: &str) -> BTreeMap<String, PropertyValue> {
        self.read()
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, e)| (k.clone(), e.value.clone()))
            .collect()
    }

    /// All properties whose key fully matches the regular expression `pattern`.
    /// An empty result is logged as a warning `could not find anything with "<pattern>"`.
    pub fn get_matching(
        &self,
        pattern: &str,
    ) -> Result<BTreeMap<String, PropertyValue>, PropertyError> {
        let re =
            Regex::new(&format!("^(?:{pattern})$")).map_err(|e| PropertyError::InvalidRegex {
                pattern: pattern.to_owned(),
                message: e.to_string(),
            })?;
        let result: BTreeMap<String, PropertyValue> = self
            .read()
            .iter()
            .filter(|(k, _)| re.is_match(k))
            .map(|(k, e)| (k.clone(), e.value.clone()))
            .collect();
        if result.is_empty() {
            tracing::warn!("could not find anything with \"{}\"", pattern);
        }
        Ok(result)
    }

    /// Channel name → number of sub-channels, discovered from keys of the form
    /// `chans.<name>.<...>.type` (FairMQ's regex `chans\..*\.type`; spec §3.1): the name is
    /// the text between `chans.` and the next `.`, and the count is the number of such keys.
    pub fn channel_info(&self) -> BTreeMap<String, usize> {
        let mut info = BTreeMap::new();
        for key in self.read().keys() {
            let Some(rest) = key.strip_prefix("chans.") else {
                continue;
            };
            // `.*` must match at least the text before `.type`: "chans.<x>.type".
            let Some(middle) = rest.strip_suffix(".type") else {
                continue;
            };
            let name = middle.split('.').next().unwrap_or(middle);
            *info.entry(name.to_owned()).or_insert(0) += 1;
        }
        info
    }

    /// Every property with value and origin, sorted by key.
    pub fn describe(&self) -> Vec<PropertyInfo> {
        self.read()
            .iter()
            .map(|(k, e)| PropertyInfo {
                key: k.clone(),
                value: e.value.clone(),
                origin: e.origin,
            })
            .collect()
    }

    /// The configuration table of §2.4: one line per property, sorted by key,
    /// `<key padded> = <value padded (width capped at 100)> <<type>> <origin>`.
    /// Lines are separated by `\n`; the caller logs them after `Configuration: `.
    pub fn format_configuration(&self) -> String {
        let rows = self.describe();
        let key_width = rows
            .iter()
            .map(|r| r.key.chars().count())
            .max()
            .unwrap_or(0);
        let values: Vec<String> = rows.iter().map(|r| r.value.to_string()).collect();
        let value_width = values
            .iter()
            .map(|v| v.chars().count())
            .max()
            .unwrap_or(0)
            .min(100);
        rows.iter()
            .zip(values)
            .map(|(r, v)| {
                format!(
                    "{:<kw$} = {:<vw$} <{}> {}",
                    r.key,
                    v,
                    r.value.type_name(),
                    r.origin,
                    kw = key_width,
                    vw = value_width
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    // ----- subscriptions -----

    /// Subscribes `callback` (as subscriber `id`) to every write of a value of type `T`.
    /// Each (id, type) pair holds one subscription; subscribing again replaces it.
    pub fn subscribe<T, F>(&self, id: impl Into<String>, callback: F)
    where
        T: PropertyKind,
        F: Fn(&str, &T) + Send + Sync + 'static,
    {
        let id = id.into();
        let wrapped: ValueCallback = Arc::new(move |key: &str, value: &PropertyValue| {
            if let Some(v) = T::from_value(value) {
                callback(key, &v);
            }
        });
        let mut subs = self.subscribers();
        subs.typed.retain(|s| !(s.id == id && s.ty == T::TYPE));
        subs.typed.push(TypedSubscriber {
            id,
            ty: T::TYPE,
            callback: wrapped,
        });
    }

    /// Removes the subscription of `id` for type `T`. Returns whether it existed.
    pub fn unsubscribe<T: PropertyKind>(&self, id: &str) -> bool {
        let mut subs = self.subscribers();
        let before = subs.typed.len();
        subs.typed.retain(|s| !(s.id == id && s.ty == T::TYPE));
        subs.typed.len() != before
    }

    /// Subscribes `callback` (as subscriber `id`) to every write, with the value converted
    /// to a string. Subscribing again with the same id replaces the subscription.
    pub fn subscribe_as_string<F>(&self, id: impl Into<String>, callback: F)
    where
        F: Fn(&str, &str) + Send + Sync + 'static,
    {
        let id = id.into();
        let mut subs = self.subscribers();
        subs.as_string.retain(|(i, _)| *i != id);
        subs.as_string.push((id, Arc::new(callback)));
    }

    /// Removes the as-string subscription of `id`. Returns whether it existed.
    pub fn unsubscribe_as_string(&self, id: &str) -> bool {
        let mut subs = self.subscribers();
        let before = subs.as_string.len();
        subs.as_string.retain(|(i, _)| i != id);
        subs.as_string.len() != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn set_and_get_typed() {
        let p = Properties::new();
        p.set("id", "sampler1");
        p.set("io-threads", 1i32);
        p.set("shm-segment-size", 2_147_483_648u64);
        p.set("shm-segment-id", 0u16);
        p.set("rate", 0.5f32);
        p.set("color", true);
        p.set("plugins", vec!["a", "b"]);
        assert_eq!(p.get::<String>("id").unwrap(), "sampler1");
        assert_eq!(p.get::<i32>("io-threads").unwrap(), 1);
        assert_eq!(p.get::<u64>("shm-segment-size").unwrap(), 2_147_483_648);
        assert_eq!(p.get::<u16>("shm-segment-id").unwrap(), 0);
        assert_eq!(p.get::<f32>("rate").unwrap(), 0.5);
        assert!(p.get::<bool>("color").unwrap());
        assert_eq!(
            p.get::<Vec<String>>("plugins").unwrap(),
            vec!["a".to_string(), "b".to_string()]
        );
        assert_eq!(p.len(), 7);
    }

    #[test]
    fn not_found_and_type_mismatch_errors() {
        let p = Properties::new();
        p.set("linger", "500");
        let err = p.get::<i32>("nope").unwrap_err();
        assert_eq!(err, PropertyError::NotFound("nope".into()));
        assert_eq!(err.to_string(), "Config has no key: nope");
        let err = p.get::<i32>("linger").unwrap_err();
        assert_eq!(
            err,
            PropertyError::TypeMismatch {
                key: "linger".into(),
                expected: "int",
                actual: "string"
            }
        );
        let msg = err.to_string();
        assert!(msg.contains("'linger'") && msg.contains("'string'") && msg.contains("'int'"));
        // Exact-type: an i32 is not an i64.
        p.set("n", 5i32);
        assert!(matches!(
            p.get::<i64>("n"),
            Err(PropertyError::TypeMismatch {
                expected: "long",
                actual: "int",
                ..
            })
        ));
    }

    #[test]
    fn get_or_defaults_only_when_missing() {
        let p = Properties::new();
        assert_eq!(p.get_or("rate", 2.0f64).unwrap(), 2.0);
        p.set("rate", 3.0f64);
        assert_eq!(p.get_or("rate", 2.0f64).unwrap(), 3.0);
        p.set("rate", "fast");
        assert!(p.get_or("rate", 2.0f64).is_err());
    }

    #[test]
    fn as_string_forms() {
        let p = Properties::new();
        p.set("b", false);
        p.set("v", vec!["x", "y", "z"]);
        p.set("f", 1.5f64);
        p.set("i", -3i32);
        p.set("s", "text");
        assert_eq!(p.get_as_string("b").unwrap(), "false");
        assert_eq!(p.get_as_string("v").unwrap(), "x, y, z");
        assert_eq!(p.get_as_string("f").unwrap(), "1.5");
        assert_eq!(p.get_as_string("i").unwrap(), "-3");
        assert_eq!(p.get_as_string("s").unwrap(), "text");
        assert_eq!(
            p.get_as_string("missing").unwrap_err().to_string(),
            "Config has no key: missing"
        );
        assert_eq!(p.get_as_string_or("missing", "dflt"), "dflt");
    }

    #[test]
    fn type_labels() {
        let cases: [(PropertyValue, &str); 10] = [
            ("s".into(), "string"),
            (true.into(), "bool"),
            (1i32.into(), "int"),
            (1i64.into(), "long"),
            (1u16.into(), "unsigned short"),
            (1u32.into(), "unsigned int"),
            (1u64.into(), "unsigned long"),
            (1f32.into(), "float"),
            (1f64.into(), "double"),
            (vec!["a"].into(), "vector<string>"),
        ];
        for (v, label) in cases {
            assert_eq!(v.type_name(), label);
            assert_eq!(v.property_type().to_string(), label);
        }
    }

    #[test]
    fn parse_value_by_type() {
        assert_eq!(
            PropertyType::I32.parse_value(" 500 ").unwrap(),
            PropertyValue::I32(500)
        );
        assert_eq!(
            PropertyType::Bool.parse_value("1").unwrap(),
            PropertyValue::Bool(true)
        );
        assert_eq!(
            PropertyType::Bool.parse_value("false").unwrap(),
            PropertyValue::Bool(false)
        );
        assert_eq!(
            PropertyType::Strings.parse_value("a, b").unwrap(),
            PropertyValue::Strings(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            PropertyType::Strings.parse_value("").unwrap(),
            PropertyValue::Strings(vec![])
        );
        assert_eq!(
            PropertyType::U16.parse_value("70000").unwrap_err(),
            PropertyError::Parse {
                value: "70000".into(),
                expected: "unsigned short"
            }
        );
        assert!(PropertyType::Bool.parse_value("yes").is_err());
        assert!(PropertyType::F64.parse_value("x").is_err());
    }

    #[test]
    fn try_from_value() {
        assert_eq!(i32::try_from(PropertyValue::I32(4)), Ok(4));
        assert_eq!(
            i32::try_from(PropertyValue::Bool(true)),
            Err(PropertyValue::Bool(true))
        );
    }

    #[test]
    fn update_is_all_or_nothing() {
        let p = Properties::new();
        p.set("a", 1i32);
        p.set("b", 2i32);
        assert_eq!(
            p.update("c", 3i32),
            Err(PropertyError::NotFound("c".into()))
        );
        assert!(!p.contains("c"));
        p.update("a", 10i32).unwrap();
        assert_eq!(p.get::<i32>("a").unwrap(), 10);

        let err = p
            .update_many([("a", 100i32), ("x", 1i32), ("b", 200i32), ("y", 2i32)])
            .unwrap_err();
        assert_eq!(
            err,
            PropertyError::UpdateMissingKeys(vec!["x".into(), "y".into()])
        );
        assert!(err.to_string().contains("Config has no key: x, y"));
        assert_eq!(p.get::<i32>("a").unwrap(), 10);
        assert_eq!(p.get::<i32>("b").unwrap(), 2);
        p.update_many([("a", 100i32), ("b", 200i32)]).unwrap();
        assert_eq!(p.get::<i32>("a").unwrap(), 100);
        assert_eq!(p.get::<i32>("b").unwrap(), 200);
    }

    #[test]
    fn delete_keys_count() {
        let p = Properties::new();
        p.set_many([("k2", 1i32), ("k1", 2i32), ("k3", 3i32)]);
        assert_eq!(p.keys(), vec!["k1", "k2", "k3"]);
        assert_eq!(p.count("k1"), 1);
        assert!(p.delete("k1"));
        assert!(!p.delete("k1"));
        assert_eq!(p.count("k1"), 0);
        assert_eq!(p.keys(), vec!["k2", "k3"]);
        assert!(!p.is_empty());
    }

    #[test]
    fn starting_with_and_matching() {
        let p = Properties::new();
        p.set("chans.data.0.type", "push");
        p.set("chans.data.1.type", "push");
        p.set("chans.data.0.address", "tcp://*:5555");
        p.set("chans.ctrl.0.type", "pair");
        p.set("chansx", 1i32);
        p.set("id", "x");
        let sw = p.get_starting_with("chans.data.");
        assert_eq!(
            sw.keys().collect::<Vec<_>>(),
            vec![
                "chans.data.0.address",
                "chans.data.0.type",
                "chans.data.1.type"
            ]
        );
        assert!(p.get_starting_with("zzz").is_empty());

        let m = p.get_matching(r"chans\..*\.type").unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m["chans.ctrl.0.type"], PropertyValue::String("pair".into()));
        // Full match: a partial match is not enough.
        assert!(p.get_matching("chans").unwrap().is_empty());
        assert!(p.get_matching("d|i").unwrap().is_empty());
        assert_eq!(p.get_matching("i.").unwrap().len(), 1);
        assert!(matches!(
            p.get_matching("("),
            Err(PropertyError::InvalidRegex { .. })
        ));
    }

    #[test]
    fn channel_info_counts_type_keys() {
        let p = Properties::new();
        p.set("chans.data.0.type", "push");
        p.set("chans.data.1.type", "push");
        p.set("chans.data.0.address", "tcp://*:5555");
        p.set("chans.ack.0.type", "pull");
        p.set("chans.ack.0.method", "bind");
        p.set("chans.nosub.0.address", "x");
        p.set("other.data.0.type", "push");
        assert_eq!(
            p.channel_info().into_iter().collect::<Vec<_>>(),
            vec![("ack".to_string(), 1), ("data".to_string(), 2)]
        );
    }

    #[test]
    fn origins_and_configuration_table() {
        let p = Properties::new();
        p.set_default("io-threads", 1i32);
        p.set("id", "sampler1");
        p.set_with_origin("mq-config", "", Origin::Empty);
        assert_eq!(p.origin("io-threads"), Some(Origin::Default));
        assert_eq!(p.origin("id"), Some(Origin::Provided));
        assert_eq!(p.origin("mq-config"), Some(Origin::Empty));
        assert_eq!(p.origin("nope"), None);
        // set() after set_default() marks the value as provided.
        p.set("io-threads", 2i32);
        assert_eq!(p.origin("io-threads"), Some(Origin::Provided));
        p.set_default("io-threads", 1i32);

        let table = p.format_configuration();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines,
            vec![
                "id         = sampler1 <string> [provided]",
                "io-threads = 1        <int> [default]",
                "mq-config  =          <string> [empty]",
            ]
        );
        assert_eq!(p.property_type("id"), Some(PropertyType::String));
    }

    #[test]
    fn configuration_value_width_is_capped() {
        let p = Properties::new();
        p.set("a", "x".repeat(150));
        p.set("b", "y");
        let table = p.format_configuration();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[1],
            format!("b = y{} <string> [provided]", " ".repeat(99))
        );
    }

    #[test]
    fn typed_subscribers_see_only_their_type() {
        let p = Properties::new();
        let ints = Arc::new(Mutex::new(Vec::new()));
        let strings = Arc::new(Mutex::new(Vec::new()));
        let all = Arc::new(Mutex::new(Vec::new()));
        {
            let ints = Arc::clone(&ints);
            p.subscribe::<i32, _>("test", move |k, v| {
                ints.lock().unwrap().push((k.to_string(), *v))
            });
        }
        {
            let strings = Arc::clone(&strings);
            p.subscribe::<String, _>("test", move |k, v| {
                strings.lock().unwrap().push((k.to_string(), v.clone()))
            });
        }
        {
            let all = Arc::clone(&all);
            p.subscribe_as_string("test", move |k, v| {
                all.lock().unwrap().push(format!("{k}={v}"))
            });
        }
        p.set("n", 1i32);
        p.set("s", "hello");
        p.set("l", 7i64);
        p.set_many([("m", 2i32), ("o", 3i32)]);
        p.update("n", 5i32).unwrap();
        assert_eq!(
            *ints.lock().unwrap(),
            vec![
                ("n".to_string(), 1),
                ("m".to_string(), 2),
                ("o".to_string(), 3),
                ("n".to_string(), 5)
            ]
        );
        assert_eq!(
            *strings.lock().unwrap(),
            vec![("s".to_string(), "hello".to_string())]
        );
        assert_eq!(
            *all.lock().unwrap(),
            vec!["n=1", "s=hello", "l=7", "m=2", "o=3", "n=5"]
        );

        // Unsubscribing one type leaves the other subscriptions of the same id.
        assert!(p.unsubscribe::<i32>("test"));
        assert!(!p.unsubscribe::<i32>("test"));
        p.set("n", 9i32);
        p.set("s", "again");
        assert_eq!(ints.lock().unwrap().len(), 4);
        assert_eq!(strings.lock().unwrap().len(), 2);
        assert!(p.unsubscribe_as_string("test"));
        assert!(!p.unsubscribe_as_string("test"));
        p.set("n", 10i32);
        assert_eq!(all.lock().unwrap().len(), 8);
    }

    #[test]
    fn subscriber_may_read_store() {
        let p = Properties::new();
        let seen = Arc::new(Mutex::new(None));
        {
            let p2 = p.clone();
            let seen = Arc::clone(&seen);
            p.subscribe::<i32, _>("reader", move |k, _| {
                *seen.lock().unwrap() = Some(p2.get::<i32>(k).unwrap());
            });
        }
        p.set("x", 42i32);
        assert_eq!(*seen.lock().unwrap(), Some(42));
    }

    #[test]
    fn resubscribe_replaces() {
        let p = Properties::new();
        let hits = Arc::new(Mutex::new(Vec::new()));
        for tag in ["first", "second"] {
            let hits = Arc::clone(&hits);
            p.subscribe::<bool, _>("id", move |_, _| hits.lock().unwrap().push(tag));
        }
        p.set("b", true);
        assert_eq!(*hits.lock().unwrap(), vec!["second"]);
    }

    #[test]
    fn clones_share_the_store_across_threads() {
        let p = Properties::new();
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let p = p.clone();
                thread::spawn(move || {
                    for j in 0..100 {
                        p.set(format!("t{i}.{j}"), j);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(p.len(), 400);
        assert_eq!(p.get::<i32>("t3.99").unwrap(), 99);
    }
}
