//! THE single writer. Every change to `state/` happens here, from a [`Command`], whether it
//! came through Raft (persistent) or straight from a domain service (ephemeral). After each
//! command the touched services' views are republished and one [`ChangeEvent`] per service is
//! broadcast. Nothing else mutates the state or emits change events.

use std::sync::Arc;

use tokio::sync::broadcast;

use super::command::{ApplyError, AuthCommand, Command, CommandResult, ConfigCommand, NamespaceCommand, NamingCommand};
use crate::model::config::{GrayVariant, md5_hex};
use crate::model::{
    ChangeEvent, ClientId, ConfigItem, ConfigKey, HistoryEntry, HistoryOp, Instance, ServiceKey, ServiceMetadata,
};
use crate::state::accounts::{ADMIN_ROLE, Permission, RoleBinding, User};
use crate::state::naming_index::Overrides;
use crate::state::{
    AccountStore, Accounts, ConfigData, ConfigStore, Namespace, NamespaceStore, NamingData, NamingStore, StateSnapshot,
};

/// Default capacity of the change-event broadcast (`[queues] change_events`). A reader that lags further than this gets
/// `Lagged` and must resynchronise everything it follows (bounded memory by design). The
/// channel allocates and touches every slot at startup (~48 bytes each), so this is paid in
/// idle RSS: 16 384 slots are 0.75 MiB, where 65 536 were 3 MiB. The push engine only notes
/// the key of each event and pushes later (debounced), so it keeps up with the writer; a
/// reader lags only on a burst larger than this between two of its polls (e.g. a snapshot
/// install touching that many services), and then resynchronises as designed.
pub const CHANGE_EVENT_CAPACITY: usize = 16_384;

/// Applies commands to the state and announces the changes.
#[derive(Debug)]
pub struct Applier {
    naming: Arc<NamingStore>,
    configs: Arc<ConfigStore>,
    namespaces: Arc<NamespaceStore>,
    accounts: Arc<AccountStore>,
    events: broadcast::Sender<ChangeEvent>,
    events_capacity: usize,
}

impl Applier {
    /// A writer over `naming` that announces changes on a new broadcast channel of
    /// [`CHANGE_EVENT_CAPACITY`] events.
    pub fn new(naming: Arc<NamingStore>) -> Self {
        Self::with_event_capacity(naming, CHANGE_EVENT_CAPACITY)
    }

    /// [`Self::new`] with a broadcast of `capacity` events (at least 1).
    pub fn with_event_capacity(naming: Arc<NamingStore>, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let (events, _) = broadcast::channel(capacity);
        Self {
            naming,
            configs: Arc::new(ConfigStore::new()),
            namespaces: Arc::default(),
            accounts: Arc::default(),
            events,
            events_capacity: capacity,
        }
    }

    /// The namespace table this writer owns.
    pub fn namespaces(&self) -> &Arc<NamespaceStore> {
        &self.namespaces
    }

    /// The accounts this writer owns.
    pub fn accounts(&self) -> &Arc<AccountStore> {
        &self.accounts
    }

    /// The config index this writer owns.
    pub fn configs(&self) -> &Arc<ConfigStore> {
        &self.configs
    }

    /// Subscribes to change events.
    pub fn subscribe(&self) -> broadcast::Receiver<ChangeEvent> {
        self.events.subscribe()
    }

    /// Change events the slowest reader has not taken yet; at [`Self::events_capacity`] it
    /// lags and resynchronises.
    pub fn events_queued(&self) -> usize {
        self.events.len()
    }

    /// How many change events a reader may fall behind before it lags.
    pub fn events_capacity(&self) -> usize {
        self.events_capacity
    }

    /// The naming index this writer owns.
    pub fn naming(&self) -> &Arc<NamingStore> {
        &self.naming
    }

    /// Applies one command.
    pub fn apply(&self, cmd: &Command) -> CommandResult {
        let (events, result) = match cmd {
            Command::Naming(c) => self.naming.write(|data| apply_naming(data, c)),
            Command::Config(c) => self.configs.write(|data| apply_config(data, c)),
            // Neither has readers to notify: they read the tables on each request.
            Command::Namespace(c) => return self.namespaces.write(|data| apply_namespace(data, c)),
            Command::Auth(c) => return self.accounts.write(|data| apply_auth(data, c)),
        };
        self.announce(events);
        result
    }

    /// The persistent part of the state, for a Raft snapshot.
    pub fn snapshot(&self) -> StateSnapshot {
        let mut snapshot =
            self.naming.read_data(|naming| self.configs.read_data(|configs| StateSnapshot::capture(naming, configs)));
        snapshot.namespaces = self.namespaces.list();
        snapshot.accounts = self.accounts.read(Accounts::clone);
        snapshot
    }

    /// Replaces the persistent part of the state with `snapshot` (Raft snapshot install or
    /// restart). Ephemeral publications are kept.
    pub fn restore(&self, mut snapshot: StateSnapshot) {
        self.restore_configs(&mut snapshot);
        let namespaces = std::mem::take(&mut snapshot.namespaces);
        self.namespaces.write(|data| *data = namespaces.into_iter().map(|n| (n.id.clone(), n)).collect());
        let accounts = std::mem::take(&mut snapshot.accounts);
        self.accounts.write(|data| *data = accounts);
        let (events, ()) = self.naming.write(|data| {
            let mut touched: Vec<ServiceKey> =
                data.records().filter(|(_, r)| r.has_persistent_part()).map(|(k, _)| k.clone()).collect();
            for key in &touched {
                let record = data.touch(key);
                record.metadata = None;
                record.persistent.clear();
                record.overrides = Overrides::default();
                if record.has_no_instances() {
                    data.remove(key);
                }
            }
            for service in snapshot.services {
                let record = data.touch(&service.key);
                record.metadata = service.metadata;
                record.persistent = service.instances.into_iter().map(|(c, i)| (c, Arc::new(i))).collect();
                record.overrides = Arc::new(service.overrides);
                touched.push(service.key);
            }
            (touched, ())
        });
        self.announce(events);
    }

    fn restore_configs(&self, snapshot: &mut StateSnapshot) {
        let configs = std::mem::take(&mut snapshot.configs);
        let history = std::mem::take(&mut snapshot.history);
        let (last_history_id, last_config_id) = (snapshot.last_history_id, snapshot.last_config_id);
        let (events, ()) = self.configs.write(|data| {
            let mut notify: Vec<ConfigKey> = data.items.keys().cloned().collect();
            data.items = configs.into_iter().collect();
            notify.extend(data.items.keys().cloned());
            data.history = history.into_iter().map(|h| (h.id, h)).collect();
            data.last_history_id = last_history_id;
            data.last_config_id = last_config_id;
            (notify, vec![], ())
        });
        self.announce(events);
    }

    fn announce(&self, events: Vec<ChangeEvent>) {
        for event in events {
            // No receiver is fine: nobody follows changes yet.
            let _ = self.events.send(event);
        }
    }
}

/// Applies a config command; returns (keys to notify, keys to republish, result).
fn apply_config(data: &mut ConfigData, cmd: &ConfigCommand) -> (Vec<ConfigKey>, Vec<ConfigKey>, CommandResult) {
    use ConfigCommand as C;
    match cmd {
        C::Publish { key, content, meta, cas_md5, source, at_ms } => {
            let current = data.items.get(key);
            // As Nacos' insert-or-update CAS: the guard applies to an existing config only.
            if let (Some(expected), Some(item)) = (cas_md5, current)
                && item.md5 != *expected
            {
                return (vec![], vec![], Err(ApplyError::CasConflict));
            }
            let md5 = md5_hex(content);
            let changed = current.is_none_or(|i| i.md5 != md5);
            let op = if current.is_some() { HistoryOp::Update } else { HistoryOp::Insert };
            // Like Nacos, an update's history entry keeps the content it replaced (so rolling
            // back to it undoes that update); an insert's keeps the new content.
            let (recorded_content, recorded_md5, recorded_app, recorded_edk) = match current {
                Some(old) => (
                    old.content.clone(),
                    old.md5.clone(),
                    old.meta.app_name.clone(),
                    old.meta.encrypted_data_key.clone(),
                ),
                None => (content.clone(), md5.clone(), meta.app_name.clone(), meta.encrypted_data_key.clone()),
            };
            data.last_config_id += 1;
            let next_id = data.last_config_id;
            let item = data.items.entry(key.clone()).or_insert_with(|| ConfigItem {
                id: next_id,
                content: String::new(),
                md5: String::new(),
                meta: meta.clone(),
                create_time: *at_ms,
                modify_time: *at_ms,
                source: source.clone(),
                gray: Vec::new(),
            });
            item.content.clone_from(content);
            item.md5 = md5;
            item.meta = meta.clone();
            item.modify_time = *at_ms;
            item.source = source.clone();
            data.record(HistoryEntry {
                id: 0,
                key: key.clone(),
                content: recorded_content,
                md5: recorded_md5,
                app_name: recorded_app,
                encrypted_data_key: recorded_edk,
                op,
                source: source.clone(),
                time: *at_ms,
            });
            let notify = if changed { vec![key.clone()] } else { vec![] };
            (notify, vec![key.clone()], Ok(()))
        }
        C::Remove { key, source, at_ms } => {
            let Some(old) = data.items.remove(key) else { return (vec![], vec![], Ok(())) };
            data.record(HistoryEntry {
                id: 0,
                key: key.clone(),
                content: old.content,
                md5: old.md5,
                app_name: old.meta.app_name,
                encrypted_data_key: old.meta.encrypted_data_key,
                op: HistoryOp::Delete,
                source: source.clone(),
                time: *at_ms,
            });
            (vec![key.clone()], vec![], Ok(()))
        }
        C::PublishGray { key, rule, content, encrypted_data_key, at_ms } => {
            let Some(item) = data.items.get_mut(key) else {
                return (vec![], vec![], Err(ApplyError::ConfigNotFound(key.group_key())));
            };
            item.gray.retain(|g| g.rule.kind() != rule.kind());
            item.gray.push(GrayVariant {
                rule: rule.clone(),
                content: content.clone(),
                md5: md5_hex(content),
                encrypted_data_key: encrypted_data_key.clone(),
                modify_time: *at_ms,
            });
            (vec![key.clone()], vec![], Ok(()))
        }
        C::StopGray { key, kind } => {
            let Some(item) = data.items.get_mut(key) else { return (vec![], vec![], Ok(())) };
            let before = item.gray.len();
            item.gray.retain(|g| g.rule.kind() != *kind);
            if item.gray.len() == before { (vec![], vec![], Ok(())) } else { (vec![key.clone()], vec![], Ok(())) }
        }
        C::PurgeHistory { before_ms } => {
            data.history.retain(|_, h| h.time >= *before_ms);
            (vec![], vec![], Ok(()))
        }
    }
}

/// Applies a namespace command.
fn apply_namespace(data: &mut std::collections::BTreeMap<String, Namespace>, cmd: &NamespaceCommand) -> CommandResult {
    match cmd {
        NamespaceCommand::Create(ns) => {
            if data.contains_key(&ns.id) {
                return Err(ApplyError::NamespaceExists(ns.id.clone()));
            }
            data.insert(ns.id.clone(), ns.clone());
        }
        NamespaceCommand::Update { id, name, desc } => {
            let ns = data.get_mut(id).ok_or_else(|| ApplyError::NamespaceNotFound(id.clone()))?;
            ns.name.clone_from(name);
            ns.desc.clone_from(desc);
        }
        NamespaceCommand::Delete { id } => {
            data.remove(id).ok_or_else(|| ApplyError::NamespaceNotFound(id.clone()))?;
        }
    }
    Ok(())
}

/// Applies an account command.
fn apply_auth(data: &mut Accounts, cmd: &AuthCommand) -> CommandResult {
    use AuthCommand as A;
    match cmd {
        A::Bootstrap { username, password_hash } => {
            if data.bootstrapped {
                return Err(ApplyError::AlreadyBootstrapped);
            }
            data.bootstrapped = true;
            let user = User { username: username.clone(), password_hash: password_hash.clone() };
            data.users.insert(username.clone(), user);
            data.roles.insert(RoleBinding { role: ADMIN_ROLE.to_owned(), username: username.clone() });
        }
        A::CreateUser { username, password_hash } => {
            if data.users.contains_key(username) {
                return Err(ApplyError::UserExists(username.clone()));
            }
            let user = User { username: username.clone(), password_hash: password_hash.clone() };
            data.users.insert(username.clone(), user);
        }
        A::UpdatePassword { username, password_hash } => {
            let user = data.users.get_mut(username).ok_or_else(|| ApplyError::UserNotFound(username.clone()))?;
            user.password_hash.clone_from(password_hash);
        }
        A::DeleteUser { username } => {
            if data.is_admin(username) {
                return Err(ApplyError::AdminProtected(username.clone()));
            }
            data.users.remove(username).ok_or_else(|| ApplyError::UserNotFound(username.clone()))?;
            data.roles.retain(|b| b.username != *username);
        }
        A::BindRole { role, username } => {
            if !data.users.contains_key(username) {
                return Err(ApplyError::UserNotFound(username.clone()));
            }
            if !data.roles.insert(RoleBinding { role: role.clone(), username: username.clone() }) {
                return Err(ApplyError::Duplicate(format!("role '{role}' of user '{username}'")));
            }
        }
        A::UnbindRole { role, username: Some(username) } => {
            data.roles.remove(&RoleBinding { role: role.clone(), username: username.clone() });
        }
        A::UnbindRole { role, username: None } => {
            data.roles.retain(|b| b.role != *role);
            data.permissions.retain(|p| p.role != *role);
        }
        A::AddPermission { role, resource, action } => {
            // Decided here, not by the member that took the request: it may not have applied
            // the role binding yet.
            if !data.roles.iter().any(|b| b.role == *role) {
                return Err(ApplyError::RoleNotFound(role.clone()));
            }
            let p = Permission { role: role.clone(), resource: resource.clone(), action: action.clone() };
            if !data.permissions.insert(p) {
                return Err(ApplyError::Duplicate(format!("permission {resource} {action} of role '{role}'")));
            }
        }
        A::RemovePermission { role, resource, action } => {
            data.permissions.remove(&Permission {
                role: role.clone(),
                resource: resource.clone(),
                action: action.clone(),
            });
        }
    }
    Ok(())
}

/// Applies a naming command; returns the services it touched.
fn apply_naming(data: &mut NamingData, cmd: &NamingCommand) -> (Vec<ServiceKey>, CommandResult) {
    use NamingCommand as C;
    let touched = match cmd {
        C::PublishEphemeral { service, client, instances } => {
            let unchanged = data
                .get(service)
                .and_then(|r| r.ephemeral.get(client))
                .is_some_and(|old| old.iter().map(|i| &**i).eq(instances.iter()));
            let nothing_to_remove =
                instances.is_empty() && !data.get(service).is_some_and(|r| r.ephemeral.contains_key(client));
            if unchanged || nothing_to_remove {
                vec![]
            } else {
                data.set_ephemeral(service, client, instances.iter().cloned().map(Arc::new).collect());
                vec![service.clone()]
            }
        }
        C::UnpublishEphemeral { service, client } => {
            if data.get(service).is_some_and(|r| r.ephemeral.contains_key(client)) {
                data.remove_ephemeral(service, client);
                vec![service.clone()]
            } else {
                vec![]
            }
        }
        C::SetEphemeralHealth { service, client, instance, healthy } => {
            let differs = data
                .get(service)
                .and_then(|r| r.ephemeral.get(client))
                .is_some_and(|list| list.iter().any(|i| i.key() == *instance && i.healthy != *healthy));
            if differs {
                if let Some(list) = data.touch(service).ephemeral.get_mut(client) {
                    for i in list.iter_mut().filter(|i| i.key() == *instance) {
                        Arc::make_mut(i).healthy = *healthy;
                    }
                }
                vec![service.clone()]
            } else {
                vec![]
            }
        }
        C::RemoveClient { client } => {
            let services = data.services_of_client(client);
            for service in &services {
                data.remove_ephemeral(service, client);
            }
            services
        }
        C::SyncClient { client, publication } => {
            let mut touched = Vec::new();
            let wanted: std::collections::HashMap<&ServiceKey, &Vec<Instance>> =
                publication.iter().map(|(s, list)| (s, list)).collect();
            for service in data.services_of_client(client) {
                if !wanted.contains_key(&service) {
                    data.remove_ephemeral(&service, client);
                    touched.push(service);
                }
            }
            for (service, instances) in publication {
                let unchanged = data
                    .get(service)
                    .and_then(|r| r.ephemeral.get(client))
                    .is_some_and(|old| old.iter().map(|i| &**i).eq(instances.iter()));
                if !unchanged {
                    data.set_ephemeral(service, client, instances.iter().cloned().map(Arc::new).collect());
                    touched.push(service.clone());
                }
            }
            touched
        }
        C::RemoveEmptyService { service } => match data.get(service) {
            Some(r) if r.has_no_instances() && !r.has_persistent_part() => {
                data.remove(service);
                vec![service.clone()]
            }
            _ => vec![],
        },
        C::PublishPersistent { service, client, instance } => {
            data.touch(service).persistent.insert(client.clone(), Arc::new(instance.clone()));
            vec![service.clone()]
        }
        C::UnpublishPersistent { service, client } => {
            if data.get(service).is_some_and(|r| r.persistent.contains_key(client)) {
                data.touch(service).persistent.remove(client);
                vec![service.clone()]
            } else {
                vec![]
            }
        }
        C::SetPersistentHealth { service, instance, healthy } => {
            let differs = data
                .get(service)
                .is_some_and(|r| r.persistent.values().any(|i| i.key() == *instance && i.healthy != *healthy));
            if differs {
                let record = data.touch(service);
                let clients: Vec<ClientId> =
                    record.persistent.iter().filter(|(_, i)| i.key() == *instance).map(|(c, _)| c.clone()).collect();
                for client in clients {
                    if let Some(i) = record.persistent.get_mut(&client) {
                        Arc::make_mut(i).healthy = *healthy;
                    }
                }
                vec![service.clone()]
            } else {
                vec![]
            }
        }
        C::CreateService { service, metadata } => {
            if data.get(service).is_some_and(|r| r.metadata.is_some()) {
                return (vec![], Err(ApplyError::ServiceAlreadyExists(service.grouped_name())));
            }
            data.touch(service).metadata = Some(metadata.clone());
            vec![service.clone()]
        }
        C::UpdateService { service, ephemeral, protect_threshold, metadata, selector } => {
            let record = data.touch(service);
            let m = record.metadata.get_or_insert_with(|| ServiceMetadata::new(*ephemeral));
            if let Some(t) = protect_threshold {
                m.protect_threshold = *t;
            }
            if let Some(md) = metadata {
                m.metadata = md.clone();
            }
            if let Some(s) = selector {
                m.selector = s.clone();
            }
            vec![service.clone()]
        }
        C::DeleteService { service } => {
            if data.get(service).is_some_and(|r| !r.persistent.is_empty()) {
                return (vec![], Err(ApplyError::ServiceNotEmpty(service.grouped_name())));
            }
            if data.get(service).is_none() {
                return (vec![], Ok(()));
            }
            let record = data.touch(service);
            record.metadata = None;
            record.overrides = Overrides::default();
            if record.has_no_instances() {
                data.remove(service);
            }
            vec![service.clone()]
        }
        C::UpdateCluster { service, ephemeral, cluster, metadata } => {
            let record = data.touch(service);
            record
                .metadata
                .get_or_insert_with(|| ServiceMetadata::new(*ephemeral))
                .clusters
                .insert(cluster.clone(), metadata.clone());
            vec![service.clone()]
        }
        C::UpdateInstanceOverride { service, instance, patch } => {
            Arc::make_mut(&mut data.touch(service).overrides).entry(instance.clone()).or_default().merge(patch.clone());
            vec![service.clone()]
        }
        C::RemoveEmptyPersistentService { service } => match data.get(service) {
            Some(r) if r.persistent.is_empty() && r.metadata.is_none() => {
                let record = data.touch(service);
                record.overrides = Overrides::default();
                if record.has_no_instances() {
                    data.remove(service);
                }
                vec![service.clone()]
            }
            _ => vec![],
        },
    };
    (touched, Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ClientId, Instance};

    fn key(name: &str) -> ServiceKey {
        ServiceKey::new("public", "DEFAULT_GROUP", name).unwrap()
    }

    fn applier() -> Applier {
        Applier::new(Arc::new(NamingStore::new()))
    }

    #[test]
    fn publish_emits_one_event_with_a_new_revision() {
        let a = applier();
        let mut rx = a.subscribe();
        let client = ClientId::ip_port("10.0.0.1", 80, true);
        let cmd = Command::Naming(NamingCommand::PublishEphemeral {
            service: key("s"),
            client: client.clone(),
            instances: vec![Instance::new("10.0.0.1", 80, "DEFAULT", true)],
        });
        a.apply(&cmd).unwrap();
        let Ok(ChangeEvent::ServiceChanged { revision: r1, .. }) = rx.try_recv() else {
            panic!("expected a service change")
        };
        // Republishing the same data is not a change.
        a.apply(&cmd).unwrap();
        assert!(rx.try_recv().is_err());
        a.apply(&Command::Naming(NamingCommand::UnpublishEphemeral { service: key("s"), client })).unwrap();
        let Ok(ChangeEvent::ServiceChanged { revision: r2, .. }) = rx.try_recv() else {
            panic!("expected a service change")
        };
        assert!(r2 > r1);
        assert!(a.naming().view(&key("s")).unwrap().is_empty());
    }

    #[test]
    fn snapshot_restore_keeps_ephemeral_and_replaces_persistent() {
        let a = applier();
        let eph = ClientId::ip_port("10.0.0.1", 80, true);
        let per = ClientId::ip_port("10.0.0.2", 80, false);
        a.apply(&Command::Naming(NamingCommand::PublishEphemeral {
            service: key("e"),
            client: eph,
            instances: vec![Instance::new("10.0.0.1", 80, "DEFAULT", true)],
        }))
        .unwrap();
        a.apply(&Command::Naming(NamingCommand::PublishPersistent {
            service: key("p"),
            client: per,
            instance: Instance::new("10.0.0.2", 80, "DEFAULT", false),
        }))
        .unwrap();
        let snap = a.snapshot();
        assert_eq!(snap.services.len(), 1);

        let b = applier();
        b.apply(&Command::Naming(NamingCommand::CreateService {
            service: key("stale"),
            metadata: ServiceMetadata::new(false),
        }))
        .unwrap();
        b.restore(snap);
        assert!(b.naming().view(&key("stale")).is_none());
        assert_eq!(b.naming().view(&key("p")).unwrap().instance_count(), 1);
    }

    #[test]
    fn create_twice_is_refused_and_delete_refuses_non_empty() {
        let a = applier();
        let create =
            Command::Naming(NamingCommand::CreateService { service: key("s"), metadata: ServiceMetadata::new(false) });
        a.apply(&create).unwrap();
        assert!(matches!(a.apply(&create), Err(ApplyError::ServiceAlreadyExists(_))));
        a.apply(&Command::Naming(NamingCommand::PublishPersistent {
            service: key("s"),
            client: ClientId::ip_port("10.0.0.2", 80, false),
            instance: Instance::new("10.0.0.2", 80, "DEFAULT", false),
        }))
        .unwrap();
        let delete = Command::Naming(NamingCommand::DeleteService { service: key("s") });
        assert!(matches!(a.apply(&delete), Err(ApplyError::ServiceNotEmpty(_))));
    }
}
