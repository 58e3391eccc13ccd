//! Cross-batch memory (XBM, Wang et al. 2020, "Cross-Batch Memory for Embedding Learning";
//! pytorch-metric-learning's `CrossBatchMemory`): a ring buffer of recent detached embeddings
//! that each batch's anchors are mined against.

use burn::prelude::*;

use crate::error::ConfigError;
use crate::output::{DeferredOutput, TripletOutput};
use crate::triplet::TripletLoss;

/// Configuration of a [`CrossBatchMemory`].
#[derive(Config, Debug)]
pub struct CrossBatchMemoryConfig {
    /// How many embeddings the memory keeps (PML's `memory_size`). A batch may not be larger.
    /// Default: `1024` (PML's).
    #[config(default = 1024)]
    pub memory_size: usize,
}

impl CrossBatchMemoryConfig {
    /// Checks the configuration: the memory must hold at least one embedding.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.memory_size == 0 {
            return Err(ConfigError::MemorySize(self.memory_size));
        }
        Ok(())
    }

    /// An empty memory, or why the configuration cannot be used. Its dimension and device are
    /// those of the first batch it is given.
    pub fn try_init(&self) -> Result<CrossBatchMemory, ConfigError> {
        self.validate()?;
        Ok(CrossBatchMemory {
            capacity: self.memory_size,
            bank: None,
            labels: None,
            len: 0,
            next: 0,
        })
    }

    /// An empty memory.
    ///
    /// # Panics
    /// If [`validate`](Self::validate) fails, with its message.
    pub fn init(&self) -> CrossBatchMemory {
        self.try_init().unwrap_or_else(|err| panic!("{err}"))
    }
}

/// A memory bank of the last [`capacity`](Self::capacity) embeddings and labels seen, for the
/// triplet loss: each [`forward`](Self::forward) first adds the batch (detached) to the memory,
/// overwriting the oldest rows, then mines the batch's anchors against everything the memory
/// holds, the batch's own copies included, and returns the loss of those triplets, as
/// pytorch-metric-learning's `CrossBatchMemory(TripletMarginLoss(...), embedding_size,
/// memory_size, miner)` does:
/// - an anchor's own copy is never its positive;
/// - positives and negatives come from the memory, so the gradient reaches the batch through
///   its anchors only;
/// - the loss's [`Mining`](crate::Mining) is the miner: [`All`](crate::Mining::All) is PML's
///   wrapper without a miner, [`Hard`](crate::Mining::Hard) its `BatchHardMiner`,
///   [`PmlSemiHard`](crate::Mining::PmlSemiHard) its "semihard" `TripletMarginMiner`; and
///   [`SemiHard`](crate::Mining::SemiHard) FaceNet's rule over the memory;
/// - memory rows are in the order PML keeps them (the ring buffer's slots), so ties pick the
///   same triplets.
///
/// Where it differs from PML 2.9, on purpose: PML mines with the anchor's own copy as a
/// candidate positive and removes those triplets afterwards, so batch-hard loses an anchor
/// whose copy ties with its farthest real positive (duplicated or collapsed embeddings); here
/// the copy is left out before mining. PML also keeps the self-comparison of a batch of one
/// (its `not_self_comparisons` misses it); here it never counts.
///
/// On CubeCL devices (features `wgpu`, `cuda`; batch-hard on every GPU backend) the batch is
/// mined against the memory on the device, without the swap; otherwise mining reads the
/// `[batch, M]` distances back to the host. Memory is `O(M·dim)` on the device and
/// `O(batch·M)` per step. The memory is state: save it with
/// [`state`](Self::state) beside a checkpoint for an exact resume.
#[derive(Debug, Clone)]
pub struct CrossBatchMemory {
    capacity: usize,
    /// `[capacity, dim]`, detached; allocated by the first batch.
    bank: Option<Tensor<2>>,
    /// `[capacity]`, the label of each slot (the first `len` are filled), on the bank's
    /// device: a step reads nothing back to keep them.
    labels: Option<Tensor<1, Int>>,
    /// How many slots are filled.
    len: usize,
    /// The slot the next embedding goes to.
    next: usize,
}

/// What a [`CrossBatchMemory`] holds, on the host: to save beside a checkpoint and restore
/// with [`CrossBatchMemory::from_state`].
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryState {
    /// The memory's size.
    pub capacity: usize,
    /// The embedding dimension (0 while the memory is empty).
    pub dim: usize,
    /// The slot the next embedding goes to.
    pub next: usize,
    /// `[len, dim]` row-major, the filled slots in slot order.
    pub embeddings: Vec<f32>,
    /// `[len]`, one label per filled slot.
    pub labels: Vec<i64>,
}

impl CrossBatchMemory {
    /// How many embeddings the memory can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many embeddings it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets everything (PML's `reset_queue`).
    pub fn clear(&mut self) {
        self.bank = None;
        self.labels = None;
        self.len = 0;
        self.next = 0;
    }

    /// Adds the batch to the memory, then returns the loss of its anchors against the memory.
    ///
    /// # Shapes
    /// - `embeddings`: `[batch, dim]`, `labels`: `[batch]`
    /// - output: `[1]`
    ///
    /// # Panics
    /// If the batch is empty or larger than the memory, `labels` does not have one entry per
    /// embedding, or the batch's dimension is not the memory's.
    pub fn forward(
        &mut self,
        loss: &TripletLoss,
        embeddings: Tensor<2>,
        labels: Tensor<1, Int>,
    ) -> Tensor<1> {
        self.forward_with_stats(loss, embeddings, labels).loss
    }

    /// Like [`forward`](Self::forward), also returning what mining found (statistics over the
    /// batch's anchors against the memory).
    ///
    /// # Panics
    /// As [`forward`](Self::forward).
    pub fn forward_with_stats(
        &mut self,
        loss: &TripletLoss,
        embeddings: Tensor<2>,
        labels: Tensor<1, Int>,
    ) -> TripletOutput {
        self.forward_deferred(loss, embeddings, labels).read()
    }

    /// Like [`forward_with_stats`](Self::forward_with_stats), the statistics left where they
    /// were mined (see [`TripletLoss::forward_deferred`]): on a GPU nothing is read back.
    ///
    /// # Panics
    /// As [`forward`](Self::forward).
    pub fn forward_deferred(
        &mut self,
        loss: &TripletLoss,
        embeddings: Tensor<2>,
        labels: Tensor<1, Int>,
    ) -> DeferredOutput {
        let slots = self.enqueue(embeddings.clone(), labels.clone());
        let (refs, ref_labels) = self.filled().expect("the batch was stored");
        let own = slots.into_iter().map(|s| Some(s as u32)).collect();
        loss.against(embeddings, labels, refs, ref_labels, own)
    }

    /// The filled slots' embeddings and labels, `None` while empty.
    fn filled(&self) -> Option<(Tensor<2>, Tensor<1, Int>)> {
        let (bank, labels) = (self.bank.clone()?, self.labels.clone()?);
        Some(if self.len < self.capacity {
            (bank.narrow(0, 0, self.len), labels.narrow(0, 0, self.len))
        } else {
            (bank, labels)
        })
    }

    /// Adds a batch (detached) to the memory and returns the slot of each row.
    fn enqueue(&mut self, embeddings: Tensor<2>, labels: Tensor<1, Int>) -> Vec<usize> {
        let [b, dim] = embeddings.dims();
        let [n] = labels.dims();
        assert_eq!(n, b, "labels have {n} entries for {b} embeddings");
        assert!(
            b <= self.capacity,
            "a batch of {b} is larger than the cross-batch memory of {}",
            self.capacity
        );
        let bank = self
            .bank
            .take()
            .unwrap_or_else(|| Tensor::zeros([self.capacity, dim], &embeddings.device()));
        let [_, bank_dim] = bank.dims();
        assert_eq!(
            dim, bank_dim,
            "the batch is {dim}-d and the cross-batch memory {bank_dim}-d"
        );
        let rows = embeddings.detach();
        // The slots next..next+b, wrapping: at most two contiguous pieces.
        let first = b.min(self.capacity - self.next);
        let mut bank = bank.slice_assign(
            [self.next..self.next + first, 0..dim],
            rows.clone().narrow(0, 0, first),
        );
        if first < b {
            bank = bank.slice_assign([0..b - first, 0..dim], rows.narrow(0, first, b - first));
        }
        // Detached again: the bank must never hold on to a step's graph (that graph is consumed
        // by the step's backward, and a later step's backward would reach its tape).
        self.bank = Some(bank.detach());
        let label_bank = self
            .labels
            .take()
            .unwrap_or_else(|| Tensor::zeros([self.capacity], (&labels.device(), labels.dtype())));
        // The batch's labels in the bank's integer type: the first batch's (or, restored,
        // the device's, `i64` where a label does not fit `i32`); `cast` keeps a tensor of
        // that type as it is.
        let labels = labels.cast(burn::tensor::IntDType::from(label_bank.dtype()));
        let mut label_bank = label_bank.slice_assign(
            self.next..self.next + first,
            labels.clone().narrow(0, 0, first),
        );
        if first < b {
            label_bank = label_bank.slice_assign(0..b - first, labels.narrow(0, first, b - first));
        }
        self.labels = Some(label_bank);
        let slots: Vec<usize> = (0..b).map(|i| (self.next + i) % self.capacity).collect();
        self.len = (self.len + b).min(self.capacity);
        self.next = (self.next + b) % self.capacity;
        slots
    }

    /// The memory's contents on the host (one read of `len·dim` values and `len` labels).
    pub fn state(&self) -> MemoryState {
        let (dim, embeddings, labels) = match (&self.bank, self.filled()) {
            (Some(bank), Some((rows, labels))) => {
                let values = rows
                    .into_data()
                    .try_into_vec_as::<f32>()
                    .expect("memory converts to f32");
                (bank.dims()[1], values, crate::mining::read_ints(labels))
            }
            _ => (0, Vec::new(), Vec::new()),
        };
        MemoryState {
            capacity: self.capacity,
            dim,
            next: self.next,
            embeddings,
            labels,
        }
    }

    /// A memory holding `state`, on `device`, or why `state` is inconsistent.
    pub fn from_state(state: MemoryState, device: &Device) -> Result<Self, ConfigError> {
        let MemoryState {
            capacity,
            dim,
            next,
            embeddings,
            labels,
        } = state;
        let len = labels.len();
        let consistent = capacity > 0
            && len <= capacity
            && next < capacity
            && (len == capacity || next == len)
            && len.checked_mul(dim) == Some(embeddings.len())
            && (dim > 0 || len == 0);
        if !consistent {
            return Err(ConfigError::MemoryState(format!(
                "capacity {capacity}, dim {dim}, next slot {next}, {len} labels, {} values",
                embeddings.len()
            )));
        }
        let bank = (len > 0).then(|| {
            let rows = Tensor::<2>::from_data(TensorData::new(embeddings, [len, dim]), device);
            if len == capacity {
                rows
            } else {
                Tensor::cat(vec![rows, Tensor::zeros([capacity - len, dim], device)], 0)
            }
        });
        let labels = (len > 0).then(|| {
            let wide = labels.iter().any(|&l| i32::try_from(l).is_err());
            let mut padded = labels;
            padded.resize(capacity, 0);
            let data = TensorData::new(padded, [capacity]);
            if wide {
                Tensor::<1, Int>::from_data(data, (device, burn::tensor::DType::I64))
            } else {
                Tensor::<1, Int>::from_data(data, device)
            }
        });
        Ok(Self {
            capacity,
            bank,
            labels,
            len,
            next,
        })
    }
}
