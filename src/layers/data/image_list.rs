//! What the two layers reading an image list file share (ImageData, DeepLab's
//! ImageSegData): image_data_param's checks and the list's reading order.
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::RngCore;

use crate::proto::caffe::ImageDataParameter;
use crate::{bail, Result};

/// image_data_param's list file, batch size and resize target, checked.
pub(super) struct ListParams {
    pub list: String,
    pub batch_size: usize,
    /// (new_height, new_width); (0, 0) keeps each image's size.
    pub new_size: (usize, usize),
}

impl ListParams {
    pub fn read(ip: &ImageDataParameter) -> Result<ListParams> {
        let new_size = (ip.new_height() as usize, ip.new_width() as usize);
        if (new_size.0 == 0) != (new_size.1 == 0) {
            bail!("new_height and new_width must be set together");
        }
        let list = match &ip.source {
            Some(s) if !s.is_empty() => s.clone(),
            _ => bail!("image_data_param.source is required"),
        };
        let batch_size = ip.batch_size() as usize;
        if batch_size == 0 {
            bail!("image_data_param.batch_size must be positive");
        }
        Ok(ListParams { list, batch_size, new_size })
    }
}

/// A list's entries in the order the layer reads them: shuffled at the start
/// and again at every wrap when `shuffle` is set, as Caffe does.
pub(super) struct ListOrder<T> {
    pub entries: Vec<T>,
    pub pos: usize,
    shuffle: bool,
    pub rng: StdRng,
}

impl<T> ListOrder<T> {
    /// The order before the first read: shuffled when `shuffle`, then
    /// started after a random skip below `rand_skip` (0: none), whose length
    /// is returned for the layer's log line.
    pub fn start(
        mut entries: Vec<T>,
        shuffle: bool,
        rand_skip: u32,
        mut rng: StdRng,
        list: &str,
    ) -> Result<(Self, Option<usize>)> {
        if entries.is_empty() {
            bail!("source '{list}': the image list is empty");
        }
        if shuffle {
            entries.shuffle(&mut rng);
        }
        let skip = (rand_skip > 0).then(|| (rng.next_u64() % rand_skip as u64) as usize);
        if let Some(skip) = skip.filter(|&s| s >= entries.len()) {
            bail!("source '{list}': not enough images ({}) to skip {skip}", entries.len());
        }
        Ok((ListOrder { pos: skip.unwrap_or(0), entries, shuffle, rng }, skip))
    }

    pub fn current(&self) -> &T {
        &self.entries[self.pos]
    }

    /// To the next entry, reshuffling at the wrap.
    pub fn step(&mut self) {
        self.pos += 1;
        if self.pos >= self.entries.len() {
            self.pos = 0;
            if self.shuffle {
                self.entries.shuffle(&mut self.rng);
            }
        }
    }
}
