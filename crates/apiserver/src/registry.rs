//! Generic resource operations: create, get, list, update, patch, delete.
//!
//! One implementation for every kind in the resource table; what differs per
//! kind lives in [`crate::strategy`]. Objects stay `serde_json::Value` from
//! decode to storage so unknown-but-valid fields survive. Stored bytes never
//! carry `resourceVersion`: it is the storage mod revision, set on read.

use std::sync::Arc;

use api::resources::ResourceInfo;
use chrono::Utc;
use serde_json::{json, Value};
use storage::{KeyValue, Revision};

use crate::cache::{decode_stored, set_resource_version, CachedObject, WatchCache};
use crate::error::{ApiError, ApiResult, Cause, Subject};
use crate::fieldcheck;
use crate::strategy;

/// Options every write shares (query parameters).
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_manager: String,
    /// Whether the client named the manager (apply requires it).
    pub field_manager_given: bool,
    /// `Strict`, `Warn` (the default) or `Ignore`.
    pub field_validation: FieldValidation,
    /// Server-side apply already recorded managedFields for this write.
    pub managed_by_apply: bool,
    /// Who asked, where a resource records it (a CSR's `spec.username`).
    pub requester: Option<crate::auth::UserInfo>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FieldValidation {
    Strict,
    #[default]
    Warn,
    Ignore,
}

/// What a write answered, plus warnings for the `Warning` header.
#[derive(Debug)]
pub struct Written {
    pub object: Value,
    pub created: bool,
    pub warnings: Vec<String>,
}

/// How a delete was asked for (`DeleteOptions` merged with query parameters).
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
}

/// The answer to a delete: the object, and whether it is gone already.
#[derive(Debug)]
pub struct Deleted {
    pub object: Value,
    /// `false` when deletion only started (finalizers, graceful pods).
    pub finished: bool,
}

pub struct Registry {
    pub cache: Arc<WatchCache>,
    /// Service cluster IPs and node ports (see [`crate::alloc`]).
    pub services: crate::alloc::ServiceAllocator,
}

pub fn subject(resource: &ResourceInfo, name: &str) -> Subject {
    Subject {
        group: resource.group.to_string(),
        resource: resource.plural.to_string(),
        name: name.to_string(),
    }
}

fn now() -> String {
    api::meta::format_time(Utc::now())
}

/// The bytes stored for an object: JSON without `resourceVersion`.
pub(crate) fn encode_for_storage(obj: &Value) -> ApiResult<bytes::Bytes> {
    let mut copy = obj.clone();
    if let Some(meta) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        meta.remove("selfLink");
    }
    serde_json::to_vec(&copy)
        .map(bytes::Bytes::from)
        .map_err(ApiError::internal)
}

fn with_revision(mut obj: Value, revision: Revision) -> Value {
    set_resource_version(&mut obj, revision);
    obj
}

/// The random suffix upstream appends to `generateName` (no vowels, no
/// look-alike characters, so generated names never spell words).
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

pub fn parse_revision(rv: &str) -> ApiResult<Revision> {
    rv.parse()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version \"{rv}\"")))
}

impl Registry {
    pub fn new(cache: Arc<WatchCache>) -> Self {
        Self::with_services(cache, Default::default())
    }

    pub fn with_services(cache: Arc<WatchCache>, services: crate::alloc::ServiceAllocator) -> Self {
        Registry { cache, services }
    }

    /// Services write through their allocator; see [`crate::alloc`].
    fn is_service(resource: &ResourceInfo) -> bool {
        (resource.group, resource.kind) == ("", "Service")
    }

    fn is_csr(resource: &ResourceInfo) -> bool {
        (resource.group, resource.kind) == ("certificates.k8s.io", crate::csr::KIND)
    }

    fn storage(&self) -> &storage::DynStorage {
        self.cache.storage()
    }

    /// Read one object straight from storage (the source of truth).
    pub async fn get(
        &self,
        resource: &'static ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> ApiResult<Value> {
        let (obj, _) = self.get_kv(resource, namespace, name).await?;
        Ok(obj)
    }

    async fn get_kv(
        &self,
        resource: &'static ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> ApiResult<(Value, KeyValue)> {
        let key = resource.key(namespace, name);
        match self.storage().get(&key).await? {
            Some(kv) => Ok((decode_stored(&kv.value, kv.mod_revision), kv)),
            None => Err(ApiError::not_found(subject(resource, name))),
        }
    }

    /// A namespaced write needs a namespace that exists and is not going away.
    async fn check_namespace(&self, namespace: &str, creating: bool) -> ApiResult<()> {
        let namespaces = api::resources::find("", "v1", "namespaces").expect("in table");
        let ns = self
            .cache
            .resource(namespaces)
            .and_then(|c| c.get(&namespaces.key(None, namespace)));
        match ns {
            None => Err(ApiError::not_found(subject(namespaces, namespace))),
            // Parsed only for creates, the one case that reads it.
            Some(ns) if creating && api::meta::is_terminating(&ns.value()) => Err(ApiError::Forbidden {
                message: format!(
                    "unable to create new content in namespace {namespace} because it is being terminated"
                ),
            }),
            Some(_) => Ok(()),
        }
    }

    /// Check `apiVersion`/`kind` of a body against the URL's resource, and
    /// fill them in when missing.
    fn check_type_meta(resource: &ResourceInfo, obj: &mut Value) -> ApiResult<()> {
        let Some(map) = obj.as_object_mut() else {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        };
        let expected_version = resource.api_version();
        match map.get("apiVersion").and_then(Value::as_str) {
            Some(v) if v != expected_version => {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({v}) does not match the expected API version ({expected_version})"
                )))
            }
            _ => {}
        }
        match map.get("kind").and_then(Value::as_str) {
            Some(k) if !k.is_empty() && k != resource.kind => {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    resource.kind
                )))
            }
            _ => {}
        }
        map.insert("apiVersion".into(), json!(expected_version));
        map.insert("kind".into(), json!(resource.kind));
        if !map.get("metadata").is_none_or(Value::is_object) {
            return Err(ApiError::bad_request("metadata must be an object"));
        }
        Ok(())
    }

    /// Decode-level and semantic validation shared by create and update.
    fn validate(
        resource: &'static ResourceInfo,
        obj: &Value,
        options: &WriteOptions,
        warnings: &mut Vec<String>,
    ) -> ApiResult<()> {
        let name = api::meta::name(obj).unwrap_or("").to_string();
        if let Err(e) = strategy::check_decodes(resource, obj) {
            return Err(ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: {e}",
                resource.kind, resource.version, resource.kind
            )));
        }
        if options.field_validation != FieldValidation::Ignore {
            let unknown = fieldcheck::unknown_fields(resource, obj);
            if !unknown.is_empty() {
                let messages: Vec<String> = unknown
                    .iter()
                    .map(|f| format!("unknown field \"{f}\""))
                    .collect();
                if options.field_validation == FieldValidation::Strict {
                    return Err(ApiError::bad_request(format!(
                        "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                        resource.kind,
                        resource.version,
                        resource.kind,
                        messages.join(", ")
                    )));
                }
                warnings.extend(messages);
            }
        }
        let causes = strategy::validate(resource, obj);
        if !causes.is_empty() {
            return Err(ApiError::invalid(
                resource.kind,
                subject(resource, &name),
                causes,
            ));
        }
        Ok(())
    }

    pub async fn create(
        &self,
        resource: &'static ResourceInfo,
        namespace: Option<&str>,
        mut obj: Value,
        options: &WriteOptions,
    ) -> ApiResult<Written> {
        Self::check_type_meta(resource, &mut obj)?;
        let mut warnings = Vec::new();
        let meta = api::meta::metadata_mut(&mut obj);
        if resource.namespaced {
            let url_ns = namespace.unwrap_or("default");
            match meta.get("namespace").and_then(Value::as_str) {
                Some(ns) if !ns.is_empty() && ns != url_ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ))
                }
                _ => {}
            }
            meta.insert("namespace".into(), json!(url_ns));
        } else {
            meta.remove("namespace");
        }
        let name = match meta.get("name").and_then(Value::as_str) {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => {
                    let n = format!("{prefix}{}", random_suffix());
                    meta.insert("name".into(), json!(n));
                    n
                }
                _ => {
                    return Err(ApiError::invalid(
                        resource.kind,
                        subject(resource, ""),
                        vec![Cause {
                            reason: "FieldValueRequired".into(),
                            message: "Required value: name or generateName is required".into(),
                            field: "metadata.name".into(),
                        }],
                    ))
                }
            },
        };
        if !options.managed_by_apply
            && meta
                .get("resourceVersion")
                .and_then(Value::as_str)
                .is_some_and(|rv| !rv.is_empty())
        {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        for field in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            meta.remove(field);
        }
        if !options.managed_by_apply {
            // Server-side apply computed these; anything else is the
            // client's and is recomputed below.
            meta.remove("managedFields");
        }
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(now()));
        if resource.has_spec {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.remove("generation");
        }
        let ns = api::meta::namespace(&obj).map(str::to_string);
        if let Some(ns) = &ns {
            self.check_namespace(ns, true).await?;
        }
        strategy::default(resource, &mut obj);
        strategy::prepare_create(resource, &mut obj);
        if Self::is_csr(resource) {
            crate::csr::prepare_create(&mut obj, options.requester.as_ref());
        }
        Self::validate(resource, &obj, options, &mut warnings)?;
        if !options.managed_by_apply {
            crate::managed::track(
                resource,
                None,
                &mut obj,
                &options.field_manager,
                "Update",
                None,
            );
        }
        let key = resource.key(ns.as_deref(), &name);
        if Self::is_service(resource) {
            if options.dry_run && self.storage().get(&key).await?.is_some() {
                return Err(ApiError::already_exists(subject(resource, &name)));
            }
            let written = self
                .services
                .create(self.storage(), &key, &mut obj, options.dry_run)
                .await;
            return match written {
                Ok(kv) => Ok(Written {
                    object: match kv {
                        Some(kv) => with_revision(obj, kv.mod_revision),
                        None => obj,
                    },
                    created: true,
                    warnings,
                }),
                Err(crate::alloc::WriteError::Api(e)) => Err(e),
                Err(crate::alloc::WriteError::Storage(storage::Error::AlreadyExists(_))) => {
                    Err(ApiError::already_exists(subject(resource, &name)))
                }
                Err(crate::alloc::WriteError::Storage(e)) => Err(e.into()),
            };
        }
        if options.dry_run {
            if self.storage().get(&key).await?.is_some() {
                return Err(ApiError::already_exists(subject(resource, &name)));
            }
            return Ok(Written {
                object: obj,
                created: true,
                warnings,
            });
        }
        let kv = match self.storage().create(&key, encode_for_storage(&obj)?).await {
            Ok(kv) => kv,
            Err(storage::Error::AlreadyExists(_)) => {
                return Err(ApiError::already_exists(subject(resource, &name)))
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Written {
            object: with_revision(obj, kv.mod_revision),
            created: true,
            warnings,
        })
    }

    /// Replace an object (PUT), or write one of its subresources.
    ///
    /// `build` turns the current object into the desired one; it runs again
    /// when a concurrent writer wins, unless the caller pinned a
    /// resourceVersion (then the loser gets 409, as upstream).
    pub async fn update<F>(
        &self,
        resource: &'static ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        options: &WriteOptions,
        mut build: F,
    ) -> ApiResult<Written>
    where
        F: FnMut(&Value) -> ApiResult<Value>,
    {
        let key = resource.key(namespace, name);
        loop {
            let (current, kv) = self.get_kv(resource, namespace, name).await?;
            let mut new = build(&current)?;
            Self::check_type_meta(resource, &mut new)?;
            let pinned = api::meta::resource_version(&new)
                .filter(|rv| !rv.is_empty())
                .map(parse_revision)
                .transpose()?;
            if let Some(rv) = pinned {
                if rv != kv.mod_revision {
                    return Err(ApiError::stale(subject(resource, name)));
                }
            }
            let mut warnings = Vec::new();
            let mut new =
                self.prepare_update(resource, subresource, &current, new, options, &mut warnings)?;
            if let Some(ns) = namespace {
                self.check_namespace(ns, false).await?;
            }
            if unchanged(&current, &new) {
                return Ok(Written {
                    object: current,
                    created: false,
                    warnings,
                });
            }
            if options.dry_run {
                if Self::is_service(resource) {
                    // Plausible values for what a real write would allocate.
                    self.services
                        .update(
                            self.storage(),
                            &key,
                            &current,
                            &mut new,
                            kv.mod_revision,
                            true,
                        )
                        .await
                        .map_err(|e| match e {
                            crate::alloc::WriteError::Api(e) => e,
                            crate::alloc::WriteError::Storage(e) => e.into(),
                        })?;
                }
                // A dry run answers as if written, keeping the current
                // resourceVersion (nothing was stored).
                return Ok(Written {
                    object: with_revision(new, kv.mod_revision),
                    created: false,
                    warnings,
                });
            }
            if finalized(resource, &new) {
                let deleted = if Self::is_service(resource) {
                    self.services
                        .delete(self.storage(), &key, &current, kv.mod_revision)
                        .await
                } else {
                    self.storage().delete(&key, Some(kv.mod_revision)).await
                };
                match deleted {
                    Ok((_, revision)) => {
                        return Ok(Written {
                            object: with_revision(new, revision),
                            created: false,
                            warnings,
                        })
                    }
                    Err(storage::Error::Conflict { .. }) if pinned.is_none() => continue,
                    Err(storage::Error::Conflict { .. }) => {
                        return Err(ApiError::stale(subject(resource, name)))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            let result = if Self::is_service(resource) {
                let written = self
                    .services
                    .update(
                        self.storage(),
                        &key,
                        &current,
                        &mut new,
                        kv.mod_revision,
                        false,
                    )
                    .await;
                match written {
                    Ok(Some(kv)) => Ok(kv),
                    Ok(None) => Err(storage::Error::Io("internal: no Service written".into())),
                    Err(crate::alloc::WriteError::Api(e)) => return Err(e),
                    Err(crate::alloc::WriteError::Storage(e)) => Err(e),
                }
            } else {
                self.storage()
                    .update(&key, encode_for_storage(&new)?, Some(kv.mod_revision))
                    .await
            };
            match result {
                Ok(kv) => {
                    return Ok(Written {
                        object: with_revision(new, kv.mod_revision),
                        created: false,
                        warnings,
                    })
                }
                Err(storage::Error::Conflict { .. }) if pinned.is_none() => continue,
                Err(storage::Error::Conflict { .. }) => {
                    return Err(ApiError::stale(subject(resource, name)))
                }
                Err(storage::Error::NotFound(_)) => {
                    return Err(ApiError::not_found(subject(resource, name)))
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Upstream's PrepareForUpdate + ValidateUpdate: keep what a write to
    /// this endpoint may not change, bump generation, validate.
    fn prepare_update(
        &self,
        resource: &'static ResourceInfo,
        subresource: Option<&str>,
        current: &Value,
        mut new: Value,
        options: &WriteOptions,
        warnings: &mut Vec<String>,
    ) -> ApiResult<Value> {
        let name = api::meta::name(current).unwrap_or("").to_string();
        match api::meta::name(&new) {
            Some(n) if n != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )))
            }
            _ => {}
        }
        if Self::is_csr(resource) {
            crate::csr::prepare_update(subresource, current, &mut new);
        }
        match subresource {
            // A CSR's endpoints were sorted out just above.
            _ if Self::is_csr(resource) => {}
            Some("status") => {
                // A status write changes status and nothing else.
                let status = new.get("status").cloned();
                let mut merged = current.clone();
                match status {
                    Some(s) => merged["status"] = s,
                    None => {
                        if let Some(m) = merged.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
                new = merged;
            }
            // pods/binding writes spec.nodeName and the PodScheduled
            // condition together, as upstream's binding storage does.
            Some("binding") => {}
            Some("finalize") => {
                let finalizers = new.pointer("/spec/finalizers").cloned();
                let mut merged = current.clone();
                merged["spec"]["finalizers"] = finalizers.unwrap_or(json!([]));
                new = merged;
            }
            _ => {
                if resource.subresources.status {
                    match current.get("status") {
                        Some(s) => new["status"] = s.clone(),
                        None => {
                            if let Some(m) = new.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
                if resource.kind == "Namespace" {
                    let finalizers = current.pointer("/spec/finalizers").cloned();
                    if let Some(f) = finalizers {
                        new["spec"]["finalizers"] = f;
                    }
                }
            }
        }
        if let (Some(sent), Some(url)) = (api::meta::namespace(&new), api::meta::namespace(current))
        {
            if !sent.is_empty() && sent != url {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
        // Metadata the system owns.
        {
            let old_meta = api::meta::metadata(current).cloned().unwrap_or_default();
            let meta = api::meta::metadata_mut(&mut new);
            for field in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "namespace",
                "generation",
            ] {
                match old_meta.get(field) {
                    Some(v) => meta.insert(field.into(), v.clone()),
                    None => meta.remove(field),
                };
            }
            meta.insert("name".into(), json!(name));
            meta.remove("resourceVersion");
            meta.remove("selfLink");
            if api::meta::is_terminating(current) {
                // Finalizers may only be removed once deletion started.
                let old: Vec<String> = api::meta::finalizers(current);
                let added = meta
                    .get("finalizers")
                    .and_then(Value::as_array)
                    .is_some_and(|list| {
                        list.iter()
                            .filter_map(Value::as_str)
                            .any(|f| !old.iter().any(|o| o == f))
                    });
                if added {
                    return Err(ApiError::invalid(
                        resource.kind,
                        subject(resource, &name),
                        vec![Cause::forbidden(
                            "metadata.finalizers",
                            "no new finalizers can be added if the object is being deleted",
                        )],
                    ));
                }
            }
        }
        if Self::is_service(resource) {
            crate::alloc::spec::prepare_update(current, &mut new);
        }
        strategy::default(resource, &mut new);
        Self::validate(resource, &new, options, warnings)?;
        if Self::is_csr(resource) {
            let causes = crate::csr::validate_conditions(&new, Some(current));
            if !causes.is_empty() {
                return Err(ApiError::invalid(
                    resource.kind,
                    subject(resource, &name),
                    causes,
                ));
            }
        }
        let immutable = strategy::immutable_changes(resource, current, &new);
        if !immutable.is_empty() {
            return Err(ApiError::invalid(
                resource.kind,
                subject(resource, &name),
                immutable,
            ));
        }
        if resource.has_spec && strategy::spec_part(current) != strategy::spec_part(&new) {
            let generation = current
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            api::meta::metadata_mut(&mut new).insert("generation".into(), json!(generation + 1));
        }
        if !options.managed_by_apply {
            crate::managed::track(
                resource,
                Some(current),
                &mut new,
                &options.field_manager,
                "Update",
                subresource,
            );
        }
        Ok(new)
    }

    /// Delete one object, honouring finalizers, propagation and pod grace.
    pub async fn delete(
        &self,
        resource: &'static ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        options: &DeleteOptions,
    ) -> ApiResult<Deleted> {
        if resource.kind == "Namespace" && ["default", "kube-system", "kube-public"].contains(&name)
        {
            // Upstream's NamespaceLifecycle admission protects these.
            return Err(ApiError::Forbidden {
                message: format!(
                    "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
                ),
            });
        }
        let key = resource.key(namespace, name);
        loop {
            let (current, kv) = self.get_kv(resource, namespace, name).await?;
            check_preconditions(resource, &current, kv.mod_revision, options)?;
            let mut next = current.clone();
            let mut finalizers = api::meta::finalizers(&current);
            match options.propagation_policy.as_deref() {
                Some("Foreground") if !finalizers.iter().any(|f| f == "foregroundDeletion") => {
                    finalizers.push("foregroundDeletion".into())
                }
                Some("Orphan") if !finalizers.iter().any(|f| f == "orphan") => {
                    finalizers.push("orphan".into())
                }
                Some("Foreground" | "Orphan" | "Background") | None => {}
                Some(other) => {
                    return Err(ApiError::invalid(
                        "DeleteOptions",
                        subject(resource, name),
                        vec![Cause {
                            reason: "FieldValueNotSupported".into(),
                            message: format!("Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""),
                            field: "propagationPolicy".into(),
                        }],
                    ))
                }
            }
            let grace = graceful_period(resource, &current, options);
            let namespace_finalizing = resource.kind == "Namespace"
                && current
                    .pointer("/spec/finalizers")
                    .and_then(Value::as_array)
                    .is_some_and(|f| !f.is_empty());
            let terminating = api::meta::is_terminating(&current);
            if !finalizers.is_empty() || grace > 0 || namespace_finalizing {
                // Deletion starts; something else finishes it.
                if terminating && grace == 0 && finalizers == api::meta::finalizers(&current) {
                    if resource.kind == "Pod" && finalizers.is_empty() {
                        // A forced delete of a terminating pod finishes now.
                    } else {
                        return Ok(Deleted {
                            object: current,
                            finished: false,
                        });
                    }
                } else {
                    let meta = api::meta::metadata_mut(&mut next);
                    if !terminating || grace > 0 {
                        let at = Utc::now() + chrono::Duration::seconds(grace);
                        let shorter = meta
                            .get("deletionGracePeriodSeconds")
                            .and_then(Value::as_i64)
                            .is_none_or(|old| grace < old);
                        if !terminating || shorter {
                            meta.insert(
                                "deletionTimestamp".into(),
                                json!(api::meta::format_time(at)),
                            );
                            meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
                        }
                    }
                    if !finalizers.is_empty() {
                        meta.insert("finalizers".into(), json!(finalizers));
                    }
                    if resource.kind == "Namespace" {
                        next["status"]["phase"] = json!("Terminating");
                    }
                    if options.dry_run {
                        return Ok(Deleted {
                            object: next,
                            finished: false,
                        });
                    }
                    match self
                        .storage()
                        .update(&key, encode_for_storage(&next)?, Some(kv.mod_revision))
                        .await
                    {
                        Ok(kv) => {
                            return Ok(Deleted {
                                object: with_revision(next, kv.mod_revision),
                                finished: false,
                            })
                        }
                        Err(storage::Error::Conflict { .. }) => continue,
                        Err(storage::Error::NotFound(_)) => {
                            return Err(ApiError::not_found(subject(resource, name)))
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            if options.dry_run {
                return Ok(Deleted {
                    object: current,
                    finished: true,
                });
            }
            let deleted = if Self::is_service(resource) {
                self.services
                    .delete(self.storage(), &key, &current, kv.mod_revision)
                    .await
            } else {
                self.storage().delete(&key, Some(kv.mod_revision)).await
            };
            match deleted {
                Ok((_, revision)) => {
                    return Ok(Deleted {
                        object: with_revision(current, revision),
                        finished: true,
                    })
                }
                Err(storage::Error::Conflict { .. }) => continue,
                Err(storage::Error::NotFound(_)) => {
                    return Err(ApiError::not_found(subject(resource, name)))
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Every object of a resource (in one namespace or all), consistent
    /// with every write acknowledged before the call (or, with
    /// `min_revision`, at least that new): from the watch cache, or from
    /// storage for the resources the cache leaves out.
    pub async fn list_current(
        &self,
        resource: &'static ResourceInfo,
        namespace: Option<&str>,
        min_revision: Option<Revision>,
    ) -> ApiResult<(Vec<Arc<CachedObject>>, Revision)> {
        let prefix = resource.namespace_prefix(namespace);
        let Some(cache) = self.cache.resource(resource) else {
            if let Some(rv) = min_revision.filter(|rv| *rv > 0) {
                self.cache.wait_for(rv).await?;
            }
            // A storage read is always current.
            let listed = self.storage().list(&prefix, Default::default()).await?;
            let objects = listed
                .items
                .iter()
                .map(|kv| {
                    Arc::new(CachedObject::from_stored(
                        resource,
                        &kv.value,
                        kv.mod_revision,
                    ))
                })
                .collect();
            return Ok((objects, listed.revision));
        };
        match min_revision {
            Some(0) => {}
            Some(rv) => {
                self.cache.wait_for(rv).await?;
            }
            None => {
                self.cache.wait_fresh().await?;
            }
        }
        Ok(cache.list(&prefix, self.cache.revision()))
    }

    /// [`Self::list_current`], parsed: for the few callers that read the
    /// objects rather than pass them on.
    pub async fn list_values(
        &self,
        resource: &'static ResourceInfo,
        namespace: Option<&str>,
    ) -> ApiResult<Vec<Value>> {
        let (objects, _) = self.list_current(resource, namespace, None).await?;
        Ok(objects.iter().map(|o| o.value()).collect())
    }

    /// One page of objects straight from storage, consistent at `revision`.
    pub async fn list_page(
        &self,
        resource: &'static ResourceInfo,
        namespace: Option<&str>,
        start_after: Option<String>,
        limit: usize,
        revision: Option<Revision>,
    ) -> ApiResult<storage::ListResult> {
        let prefix = resource.namespace_prefix(namespace);
        Ok(self
            .storage()
            .list(
                &prefix,
                storage::ListOptions {
                    start_after,
                    limit: Some(limit),
                    revision,
                },
            )
            .await?)
    }
}

/// Whether an update changes nothing worth a new revision. managedFields
/// count: a write of only them (kubectl's apply migration) is a change, and
/// a write that changes nothing leaves them as they were.
fn unchanged(current: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        v
    };
    strip(current) == strip(new)
}

/// Whether a terminating object has nothing left holding it.
fn finalized(resource: &ResourceInfo, obj: &Value) -> bool {
    if !api::meta::is_terminating(obj) || !api::meta::finalizers(obj).is_empty() {
        return false;
    }
    match resource.kind {
        "Namespace" => obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_none_or(|f| f.is_empty()),
        // A terminating pod waits for its kubelet (or a forced delete).
        "Pod" => {
            obj.pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                == 0
        }
        _ => true,
    }
}

fn check_preconditions(
    resource: &ResourceInfo,
    current: &Value,
    revision: Revision,
    options: &DeleteOptions,
) -> ApiResult<()> {
    let name = api::meta::name(current).unwrap_or("");
    if let Some(uid) = &options.precondition_uid {
        let actual = api::meta::meta_str(current, "uid").unwrap_or("");
        if uid != actual {
            return Err(ApiError::conflict(
                subject(resource, name),
                format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                ),
            ));
        }
    }
    if let Some(rv) = &options.precondition_resource_version {
        if *rv != revision.to_string() {
            return Err(ApiError::conflict(
                subject(resource, name),
                format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {revision}"),
            ));
        }
    }
    Ok(())
}

/// Upstream's CheckGracefulDelete for pods: bound, non-terminal pods get a
/// grace period (the request's, else their own); everything else goes now.
fn graceful_period(resource: &ResourceInfo, obj: &Value, options: &DeleteOptions) -> i64 {
    if resource.kind != "Pod" {
        return 0;
    }
    let requested = options.grace_period_seconds;
    if requested == Some(0) {
        return 0;
    }
    let node = obj
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("");
    let phase = obj
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    if node.is_empty() || phase == "Succeeded" || phase == "Failed" {
        return 0;
    }
    requested
        .or_else(|| {
            obj.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(30)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_suffixes_avoid_vowels() {
        for _ in 0..100 {
            let s = random_suffix();
            assert_eq!(s.len(), 5);
            assert!(!s.contains(['a', 'e', 'i', 'o', 'u', '0', '1', '3']));
        }
    }

    #[test]
    fn only_bound_running_pods_get_a_grace_period() {
        let pods = api::resources::find("", "v1", "pods").unwrap();
        let opts = DeleteOptions::default();
        let unbound = json!({"spec": {}, "status": {"phase": "Pending"}});
        assert_eq!(graceful_period(pods, &unbound, &opts), 0);
        let bound = json!({"spec": {"nodeName": "n", "terminationGracePeriodSeconds": 5}, "status": {"phase": "Running"}});
        assert_eq!(graceful_period(pods, &bound, &opts), 5);
        let forced = DeleteOptions {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        assert_eq!(graceful_period(pods, &bound, &forced), 0);
    }

    #[test]
    fn terminating_objects_without_finalizers_are_finalized() {
        let cms = api::resources::find("", "v1", "configmaps").unwrap();
        let obj = json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}});
        assert!(finalized(cms, &obj));
        let held = json!({"metadata": {"deletionTimestamp": "x", "finalizers": ["a"]}});
        assert!(!finalized(cms, &held));
        let ns = api::resources::find("", "v1", "namespaces").unwrap();
        let ns_obj =
            json!({"metadata": {"deletionTimestamp": "x"}, "spec": {"finalizers": ["kubernetes"]}});
        assert!(!finalized(ns, &ns_obj));
    }
}
