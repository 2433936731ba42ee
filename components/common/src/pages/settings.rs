//! What pages are written with, and the one place a [`Writer`] is put together: the drain's
//! [`PageHandler`] and the periodic sync's writes get the same writer from the same settings, copying
//! recordings, voicemails and message media to object storage when it is configured.

use crate::configuration::{
    ConfigError, NotionConfig, OpenPhoneConfig, Settings, StorageConfig, SyncConfig,
};
use crate::drain::Router;
use crate::lease::Lease;
use crate::notion::Notion;
use crate::openphone::OpenPhone;
use crate::platform::Platform;
use crate::storage::media::MediaCopier;

use super::handler::PageHandler;
use super::Writer;

/// The configuration every page write needs.
#[derive(Debug, Clone)]
pub struct PageSettings {
    /// OpenPhone access, and where its media are fetched from.
    pub openphone: OpenPhoneConfig,
    /// Notion access and databases.
    pub notion: NotionConfig,
    /// The workspace's own numbers, Canvas record creation.
    pub sync: SyncConfig,
    /// Object storage, when configured: media are copied there. Without it pages link OpenPhone's URLs.
    pub storage: Option<StorageConfig>,
}

impl PageSettings {
    /// Loads the settings from the request's `settings`. Object storage is optional: pages are written
    /// without it.
    pub fn load(settings: &Settings) -> Result<Self, ConfigError> {
        let (openphone, notion, sync) = settings.load(|l| {
            (
                OpenPhoneConfig::load(l),
                NotionConfig::load(l),
                SyncConfig::load(l),
            )
        })?;
        Ok(Self {
            openphone,
            notion,
            sync,
            storage: settings.load(StorageConfig::load).ok(),
        })
    }

    /// A writer over `notion` and `openphone` that checks `lease` before every write and copies media
    /// when object storage is configured. Fails only when the storage configuration cannot make a client.
    pub fn writer<'a>(
        &'a self,
        platform: &'a Platform,
        notion: &'a Notion<'a>,
        openphone: &'a OpenPhone<'a>,
        lease: &'a Lease,
    ) -> anyhow::Result<Writer<'a>> {
        let writer = Writer::new(platform, notion, openphone, self).under_lease(lease);
        Ok(match self.media(platform)? {
            Some(media) => writer.with_media(media),
            None => writer,
        })
    }

    /// What copies media to object storage, when it is configured. Fails only when the storage
    /// configuration cannot make a client.
    pub fn media<'a>(&'a self, platform: &'a Platform) -> anyhow::Result<Option<MediaCopier<'a>>> {
        self.storage
            .as_ref()
            .map(|storage| MediaCopier::new(platform, storage, &self.openphone.media_base))
            .transpose()
    }

    /// The drain's routes: every processed event type to a [`PageHandler`] with these settings. The
    /// `queue-drain` component drains with them ([`crate::app::drain`]), and a number's sync lets the
    /// number's events in with them ([`crate::sync::interleave`]).
    pub fn router(&self, platform: &Platform) -> Router {
        if self.storage.is_none() {
            // The pages still get written, linking OpenPhone's media URLs; /health names what is missing.
            tracing::error!("recordings are not copied: object storage is not configured");
        }
        PageHandler::new(platform.clone(), self.clone()).router()
    }
}
