//! `easel:plugin/images`: host-owned images behind resource handles.

use super::{HostResult, denied, error};
use crate::plugins::bindings::easel::plugin::images::{self, Fit, Format, Info, Rgba};
use crate::plugins::images::{self as ops, ImageOpError, PluginImage};
use crate::plugins::state::CallState;
use wasmtime::component::Resource;

fn op_error(e: ImageOpError) -> crate::plugins::bindings::easel::plugin::types::PluginError {
    error(e.code(), e.to_string())
}

fn rgba(c: Rgba) -> [u8; 4] {
    [c.r, c.g, c.b, c.a]
}

impl CallState {
    /// Budget and capability check shared by every image operation.
    fn image_gate(&mut self) -> wasmtime::Result<HostResult<()>> {
        self.charge_call()?;
        Ok(if self.env.granted.images {
            Ok(())
        } else {
            Err(denied("images"))
        })
    }

    /// Stores a new image, charging its bytes to the call's memory limit.
    fn push_image(
        &mut self,
        img: Result<PluginImage, ImageOpError>,
    ) -> wasmtime::Result<HostResult<Resource<PluginImage>>> {
        let img = match img {
            Ok(img) => img,
            Err(e) => return Ok(Err(op_error(e))),
        };
        if let Err(v) = self.limiter.charge_host_bytes(img.size_bytes()) {
            return Err(v.into());
        }
        Ok(Ok(self.table.push(img)?))
    }

    /// Checks that an image of `width` x `height` fits the memory limit before making it.
    fn plan_image(&mut self, width: u32, height: u32) -> wasmtime::Result<HostResult<()>> {
        let bytes = match PluginImage::planned_bytes(width, height) {
            Ok(b) => b,
            Err(e) => return Ok(Err(op_error(e))),
        };
        if self.limiter.memory_used + bytes > self.limiter.memory_limit {
            self.limiter.charge_host_bytes(bytes)?;
        }
        Ok(Ok(()))
    }

    fn image(&self, r: &Resource<PluginImage>) -> wasmtime::Result<&PluginImage> {
        Ok(self.table.get(r)?)
    }

    fn remaining_memory(&self) -> u64 {
        self.limiter
            .memory_limit
            .saturating_sub(self.limiter.memory_used)
    }
}

macro_rules! gate {
    ($self:ident) => {
        if let Err(e) = $self.image_gate()? {
            return Ok(Err(e));
        }
    };
}

macro_rules! plan {
    ($self:ident, $w:expr, $h:expr) => {
        if let Err(e) = $self.plan_image($w, $h)? {
            return Ok(Err(e));
        }
    };
}

impl images::Host for CallState {}

impl images::HostImage for CallState {
    fn decode(&mut self, bytes: Vec<u8>) -> wasmtime::Result<HostResult<Resource<PluginImage>>> {
        gate!(self);
        let img = PluginImage::decode(&bytes, self.remaining_memory());
        self.push_image(img)
    }

    fn filled(
        &mut self,
        width: u32,
        height: u32,
        color: Rgba,
    ) -> wasmtime::Result<HostResult<Resource<PluginImage>>> {
        gate!(self);
        plan!(self, width, height);
        self.push_image(PluginImage::filled(width, height, rgba(color)))
    }

    fn from_rgba(
        &mut self,
        width: u32,
        height: u32,
        pixels: Vec<u8>,
    ) -> wasmtime::Result<HostResult<Resource<PluginImage>>> {
        gate!(self);
        plan!(self, width, height);
        self.push_image(PluginImage::from_rgba(width, height, pixels))
    }

    fn info(&mut self, this: Resource<PluginImage>) -> wasmtime::Result<Info> {
        // Reading the shape of a handle the guest was given needs no capability.
        self.charge_call()?;
        let img = self.image(&this)?;
        Ok(Info {
            width: img.width(),
            height: img.height(),
            has_alpha: img.has_alpha(),
        })
    }

    fn to_rgba(&mut self, this: Resource<PluginImage>) -> wasmtime::Result<HostResult<Vec<u8>>> {
        gate!(self);
        Ok(Ok(self.image(&this)?.pixels.as_raw().clone()))
    }

    fn encode(
        &mut self,
        this: Resource<PluginImage>,
        format: Format,
    ) -> wasmtime::Result<HostResult<Vec<u8>>> {
        gate!(self);
        let format = match format {
            Format::Png => ops::Format::Png,
            Format::Jpeg => ops::Format::Jpeg,
            Format::Webp => ops::Format::Webp,
        };
        Ok(self.image(&this)?.encode(format).map_err(op_error))
    }

    fn resize(
        &mut self,
        this: Resource<PluginImage>,
        width: u32,
        height: u32,
        fit: Fit,
        background: Option<Rgba>,
    ) -> wasmtime::Result<HostResult<Resource<PluginImage>>> {
        gate!(self);
        plan!(self, width, height);
        let fit = match fit {
            Fit::Fill => ops::Fit::Fill,
            Fit::Contain => ops::Fit::Contain,
            Fit::Cover => ops::Fit::Cover,
        };
        let img = self
            .image(&this)?
            .resize(width, height, fit, background.map(rgba));
        self.push_image(img)
    }

    fn crop(
        &mut self,
        this: Resource<PluginImage>,
        x: u32,
        y: u32,
        width: u32,
        height: u32,
    ) -> wasmtime::Result<HostResult<Resource<PluginImage>>> {
        gate!(self);
        plan!(self, width, height);
        let img = self.image(&this)?.crop(x, y, width, height);
        self.push_image(img)
    }

    fn composite(
        &mut self,
        this: Resource<PluginImage>,
        top: Resource<PluginImage>,
        x: i32,
        y: i32,
        opacity: f32,
    ) -> wasmtime::Result<HostResult<Resource<PluginImage>>> {
        gate!(self);
        let base = self.image(&this)?;
        let (w, h) = (base.width(), base.height());
        plan!(self, w, h);
        let img = self
            .image(&this)?
            .composite(self.image(&top)?, x, y, opacity);
        self.push_image(img)
    }

    fn draw_text(
        &mut self,
        this: Resource<PluginImage>,
        text: String,
        x: i32,
        y: i32,
        scale: u32,
        color: Rgba,
    ) -> wasmtime::Result<HostResult<Resource<PluginImage>>> {
        gate!(self);
        let base = self.image(&this)?;
        let (w, h) = (base.width(), base.height());
        plan!(self, w, h);
        let img = self
            .image(&this)?
            .draw_text(&text, x, y, scale, rgba(color));
        self.push_image(img)
    }

    fn metadata(&mut self, this: Resource<PluginImage>) -> wasmtime::Result<Vec<(String, String)>> {
        self.charge_call()?;
        Ok(self.image(&this)?.metadata.clone())
    }

    fn with_metadata(
        &mut self,
        this: Resource<PluginImage>,
        key: String,
        value: String,
    ) -> wasmtime::Result<HostResult<Resource<PluginImage>>> {
        gate!(self);
        let img = self.image(&this)?.with_metadata(&key, &value);
        // Shares the pixels: only the metadata is new, so nothing is charged for them.
        match img {
            Ok(img) => Ok(Ok(self.table.push(img)?)),
            Err(e) => Ok(Err(op_error(e))),
        }
    }

    fn drop(&mut self, rep: Resource<PluginImage>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}
