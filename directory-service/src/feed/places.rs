//! Who may open a feed stream, so that the feed stays fair: a pool of places
//! (`max_streams`), a few more kept for streams that follow every tenant
//! (`reserved_streams`: the authorization services, whom no other caller can
//! then lock out), and a quota per credential (`streams_per_credential`: one
//! caller cannot take the whole pool from the others). A [`Place`] is held by
//! the stream's task and freed the moment it ends, also when the subscriber is
//! cut off while its connection lives on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::FeedSettings;

/// The open streams' places.
#[derive(Clone)]
pub struct Places {
    general: Arc<Semaphore>,
    reserved: Arc<Semaphore>,
    per_credential: usize,
    /// Streams open per credential name.
    held: Arc<Mutex<HashMap<String, usize>>>,
}

/// A stream's place; dropping it frees the place.
pub struct Place {
    _permit: OwnedSemaphorePermit,
    credential: String,
    held: Arc<Mutex<HashMap<String, usize>>>,
}

/// Why a stream was refused a place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the server is at its limit of open feed streams; retry with backoff")]
    Full,
    #[error("credential `{credential}` already holds {limit} open feed streams, its quota; close one or retry with backoff")]
    Quota { credential: String, limit: usize },
}

impl Places {
    pub fn new(settings: &FeedSettings) -> Self {
        Places {
            general: Arc::new(Semaphore::new(settings.max_streams.max(1))),
            reserved: Arc::new(Semaphore::new(settings.reserved_streams)),
            per_credential: settings.streams_per_credential.max(1),
            held: Arc::default(),
        }
    }

    /// The streams open now, by credential (for the metrics).
    pub fn open_streams(&self) -> Vec<(String, usize)> {
        let held = self.held.lock().expect("not poisoned");
        held.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// A place for a stream of `credential`; one that follows every tenant takes
    /// a reserved place first.
    pub fn admit(&self, credential: &str, all_tenants: bool) -> Result<Place, Refused> {
        let mut held = self.held.lock().expect("not poisoned");
        if held.get(credential).copied().unwrap_or(0) >= self.per_credential {
            return Err(Refused::Quota {
                credential: credential.to_owned(),
                limit: self.per_credential,
            });
        }
        let reserved = if all_tenants {
            self.reserved.clone().try_acquire_owned().ok()
        } else {
            None
        };
        let permit = match reserved {
            Some(permit) => permit,
            None => self
                .general
                .clone()
                .try_acquire_owned()
                .map_err(|_| Refused::Full)?,
        };
        *held.entry(credential.to_owned()).or_default() += 1;
        Ok(Place {
            _permit: permit,
            credential: credential.to_owned(),
            held: self.held.clone(),
        })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut held = self.held.lock().expect("not poisoned");
        if let Some(count) = held.get_mut(&self.credential) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.credential);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn places(max: usize, reserved: usize, per_credential: usize) -> Places {
        Places::new(&FeedSettings {
            max_streams: max,
            reserved_streams: reserved,
            streams_per_credential: per_credential,
            ..Default::default()
        })
    }

    #[test]
    fn a_credential_is_held_to_its_quota_and_others_still_get_places() {
        let places = places(10, 0, 3);
        let mine: Vec<Place> = (0..3).map(|_| places.admit("a", false).unwrap()).collect();
        assert!(matches!(
            places.admit("a", false),
            Err(Refused::Quota { limit: 3, .. })
        ));
        let theirs = places.admit("b", false).unwrap();
        drop(mine);
        assert!(places.admit("a", false).is_ok(), "closing frees the quota");
        drop(theirs);
    }

    #[test]
    fn reserved_places_go_to_streams_following_every_tenant() {
        let places = places(2, 1, 10);
        let _a = places.admit("a", false).unwrap();
        let _b = places.admit("b", false).unwrap();
        assert_eq!(places.admit("c", false).err(), Some(Refused::Full));
        let follower = places.admit("authz", true).unwrap();
        assert_eq!(places.admit("authz", true).err(), Some(Refused::Full));
        drop(follower);
        assert!(places.admit("authz", true).is_ok());
    }
}
