//! The prefetching machinery of the data layers (Caffe's
//! BasePrefetchingDataLayer): a background thread reads, decodes and
//! transforms batches into a bounded queue; the layer's forward takes the
//! next one and moves it to the net's device. Data, ImageData and WindowData
//! use it.
use crate::{Error, Result};
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use tch::{Device, Tensor};

use crate::bail;
use crate::layers::Shape;

/// One batch as the prefetch thread hands it over (CPU tensors).
/// A batch as plain memory. Tensors are made on the training thread: a libtorch
/// copy on the prefetch thread would start a second OpenMP team that fights the
/// training thread's for the cores (measured: LeNet steps 1.6× slower).
pub(super) struct Batch {
    pub(super) shape: [i64; 4],
    pub(super) data: Vec<f32>,
    pub(super) label: Option<Vec<f32>>,
    /// The label top's shape where it is not one value per item
    /// (AnnotatedData's rows of boxes).
    pub(super) label_shape: Option<Vec<i64>>,
    /// A third top and its shape (DeepLab's ImageSegData: each image's size).
    pub(super) extra: Option<(Vec<f32>, Vec<i64>)>,
}

/// What a prefetch thread reads from.
pub(super) trait BatchSource {
    /// The top shape of a batch (from the first record), without consuming it.
    fn batch_shape(&mut self) -> Result<Shape>;
    fn load_batch(&mut self) -> Result<Batch>;
}

/// A background thread filling a bounded queue of batches.
pub(super) struct Prefetcher {
    rx: Option<Receiver<Result<Batch>>>,
    worker: Option<JoinHandle<()>>,
    failure: Option<String>,
}

impl Prefetcher {
    /// Starts the thread; `make` opens the source there (DB handles stay on
    /// the thread that uses them). Returns once the first batch's shape is known.
    pub(super) fn start<S, F>(name: &str, depth: usize, make: F) -> Result<(Prefetcher, Shape)>
    where
        S: BatchSource,
        F: FnOnce() -> Result<S> + Send + 'static,
    {
        let (ready_tx, ready_rx) = sync_channel::<Result<Shape>>(1);
        let (tx, rx) = sync_channel::<Result<Batch>>(depth.max(1));
        let worker = std::thread::Builder::new()
            .name(format!("prefetch {name}"))
            .spawn(move || {
                let mut source = match make() {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                match source.batch_shape() {
                    Ok(shape) => {
                        if ready_tx.send(Ok(shape)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                }
                drop(ready_tx);
                loop {
                    let batch = source.load_batch();
                    let failed = batch.is_err();
                    // A closed queue means the layer is gone: stop.
                    if tx.send(batch).is_err() || failed {
                        return;
                    }
                }
            })
            .map_err(|e| Error::data(format!("cannot start the prefetch thread: {e}")))?;
        let shape = match ready_rx.recv() {
            Ok(r) => r,
            Err(_) => Err(Error::data("the prefetch thread stopped before reading the first record")),
        };
        let mut p = Prefetcher { rx: Some(rx), worker: Some(worker), failure: None };
        match shape {
            Ok(s) => Ok((p, s)),
            Err(e) => {
                p.stop();
                Err(e)
            }
        }
    }

    pub(super) fn next(&mut self) -> Result<Batch> {
        if let Some(f) = &self.failure {
            return Err(Error::data(f.clone()));
        }
        let Some(rx) = &self.rx else { return Err(Error::data("the data layer was not set up")) };
        match rx.recv() {
            Ok(Ok(b)) => Ok(b),
            Ok(Err(e)) => {
                self.failure = Some(e.to_string());
                Err(e)
            }
            Err(_) => Err(Error::data("the prefetch thread stopped")),
        }
    }

    fn stop(&mut self) {
        // Closing the queue wakes a thread blocked on a full queue; it then exits.
        self.rx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Fills a batch buffer item by item; the first item fixes the item size.
pub(super) struct BatchBuilder {
    batch_size: usize,
    item_shape: [usize; 3],
    data: Vec<f32>,
    pub(super) labels: Vec<f32>,
}

impl BatchBuilder {
    pub(super) fn new(batch_size: usize, item_shape: [usize; 3]) -> BatchBuilder {
        let n = item_shape.iter().product::<usize>();
        BatchBuilder { batch_size, item_shape, data: vec![0.0; batch_size * n], labels: Vec::with_capacity(batch_size) }
    }
    pub(super) fn item(&mut self, i: usize) -> &mut [f32] {
        let n = self.item_shape.iter().product::<usize>();
        &mut self.data[i * n..(i + 1) * n]
    }
    pub(super) fn finish(self, with_labels: bool) -> Result<Batch> {
        let [c, h, w] = self.item_shape;
        let shape = [self.batch_size as i64, c as i64, h as i64, w as i64];
        Ok(Batch { shape, data: self.data, label: with_labels.then_some(self.labels), label_shape: None, extra: None })
    }
}

pub(super) fn batch_tops(batch: Batch, device: Device) -> Result<Vec<Tensor>> {
    let data = Tensor::f_from_slice(&batch.data)?.f_view(batch.shape)?;
    let mut tops = vec![to_net_device(data, device)?];
    if let Some(l) = batch.label {
        let mut label = Tensor::f_from_slice(&l)?;
        if let Some(shape) = &batch.label_shape {
            label = label.f_view(shape.as_slice())?;
        }
        tops.push(to_net_device(label, device)?);
    }
    if let Some((values, shape)) = batch.extra {
        tops.push(to_net_device(Tensor::f_from_slice(&values)?.f_view(shape.as_slice())?, device)?);
    }
    Ok(tops)
}

/// The next prefetched batch as tops on `device` (the forward of every
/// prefetching data layer).
pub(super) fn next_tops(prefetch: &mut Option<Prefetcher>, device: Device) -> Result<Vec<Tensor>> {
    let Some(p) = prefetch.as_mut() else { bail!("forward before setup") };
    batch_tops(p.next()?, device)
}

/// Moves a host batch to the net's device. For CUDA the batch goes through
/// pinned (page-locked) memory so the copy is a fast, asynchronous DMA.
fn to_net_device(t: Tensor, device: Device) -> Result<Tensor> {
    match device {
        Device::Cpu => Ok(t),
        Device::Cuda(_) => {
            // `_pin_memory`, not `pin_memory`: tch always passes a device, and
            // libtorch's `pin_memory(device)` logs a deprecation warning on every
            // call (two lines per batch in the training log). The batch is a fresh
            // host tensor, so the is-it-pinned-already check would be wasted anyway.
            let pinned = t.f_internal_pin_memory(device)?;
            Ok(pinned.f_to_device_(device, pinned.kind(), true, false)?)
        }
        other => Ok(t.f_to_device(other)?),
    }
}
