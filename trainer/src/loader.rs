//! The streaming loader: reads a group set from the `groups` table in Lance batches, shuffles it
//! through a bounded buffer, samples one positive and `group_size − 1` negatives per group, and
//! tokenizes whole steps ahead of the model on its own task.
//!
//! Memory is bounded by the shuffle buffer, the Lance batches in flight and the prefetched steps,
//! whatever the table size. Everything random is derived from the seed, the epoch and the query
//! id, so a resumed run skips the steps it already took and reads the same batches afterwards.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int32Type};
use arrow_array::{Array, RecordBatch};
use candle_core::Tensor;
use futures::TryStreamExt;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rankdistill_store::{quote_literal, string_column, Store, Table};
use tokio::sync::mpsc;

use crate::cross_encoder::{CrossEncoder, PairBatch};
use crate::error::{ModelError, Result};

/// Settings of the loader: the group set, batch shape, shuffling and sharding.
#[derive(Debug, Clone)]
pub struct LoaderOptions {
    /// Group set name in the `groups` table.
    pub groups: String,
    /// Passages per group: one positive and `group_size − 1` negatives.
    pub group_size: usize,
    /// Groups per batch.
    pub queries_per_batch: usize,
    /// Maximum tokens per (query, passage) pair.
    pub max_len: usize,
    /// Groups held in the shuffle buffer.
    pub shuffle_buffer: usize,
    pub seed: u64,
    /// Processes sharing the stream, and this process's index among them.
    pub world_size: usize,
    pub rank: usize,
    /// Whether batches carry teacher scores; every group must then have them.
    pub with_teacher: bool,
}

/// One training batch: `queries × group_size` tokenized pairs, row-major by query.
pub struct TrainBatch {
    pub pairs: PairBatch,
    /// Relevance grades, `[queries, group_size]`; column 0 is the positive.
    pub labels: Tensor,
    /// Teacher scores, `[queries, group_size]`, when the loader reads them.
    pub teacher: Option<Tensor>,
    pub query_ids: Vec<String>,
}

/// Counts from the validation pass over a group set.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSetInfo {
    pub groups: usize,
    /// Teacher named in the group set, if it was packed with one.
    pub teacher: Option<String>,
    /// Batches each rank takes per epoch; the same on every rank.
    pub batches_per_epoch: usize,
}

/// One group as read from the table.
#[derive(Debug, Clone)]
struct Group {
    query_id: String,
    query_text: String,
    positives: usize,
    texts: Vec<String>,
    labels: Vec<i32>,
    teacher_scores: Option<Vec<f32>>,
}

const LIGHT_COLUMNS: [&str; 5] = ["query_id", "positives", "labels", "teacher", "teacher_scores"];
const ALL_COLUMNS: [&str; 6] = [
    "query_id",
    "query_text",
    "positives",
    "texts",
    "labels",
    "teacher_scores",
];

impl LoaderOptions {
    fn filter(&self) -> String {
        format!("name = {}", quote_literal(&self.groups))
    }

    fn check(&self) -> Result<()> {
        let invalid = |message: String| Err(ModelError::InvalidArgument(message));
        if self.group_size < 2 {
            return invalid(format!(
                "group size {} is below 2 (one positive and at least one negative)",
                self.group_size
            ));
        }
        if self.queries_per_batch == 0 || self.shuffle_buffer == 0 {
            return invalid("queries per step and the shuffle buffer must be at least 1".into());
        }
        if self.world_size == 0 || self.rank >= self.world_size {
            return invalid(format!(
                "rank {} is not below world size {}",
                self.rank, self.world_size
            ));
        }
        Ok(())
    }
}

/// Reads the light columns of every group once and checks that each can be trained on: a
/// positive, enough negatives for the group size, and finite teacher scores when they are
/// needed. Returns the counts that size the schedule.
pub async fn validate_groups(store: &Store, options: &LoaderOptions) -> Result<GroupSetInfo> {
    options.check()?;
    if store.try_dataset(Table::Groups).await?.is_none() {
        return Err(missing_group_set(&options.groups));
    }
    let filter = options.filter();
    let mut batches = store
        .scan(Table::Groups, None, Some(&LIGHT_COLUMNS), Some(&filter))
        .await?;

    let mut groups = 0usize;
    let mut teacher: Option<String> = None;
    while let Some(batch) = batches
        .try_next()
        .await
        .map_err(|e| store.read_error(Table::Groups, e))?
    {
        check_batch(&batch, options, &mut teacher)?;
        groups += batch.num_rows();
    }
    if groups == 0 {
        return Err(missing_group_set(&options.groups));
    }

    let per_rank_batch = options.world_size * options.queries_per_batch;
    let batches_per_epoch = groups / per_rank_batch;
    if batches_per_epoch == 0 {
        return Err(ModelError::InvalidArgument(format!(
            "group set {:?} has {groups} groups, fewer than one batch of {} queries on each of {} ranks",
            options.groups, options.queries_per_batch, options.world_size
        )));
    }
    Ok(GroupSetInfo {
        groups,
        teacher,
        batches_per_epoch,
    })
}

fn missing_group_set(name: &str) -> ModelError {
    ModelError::InvalidArgument(format!(
        "group set {name:?} is not in the groups table; build it with `rankdistill pack --name {name}`"
    ))
}

fn check_batch(batch: &RecordBatch, options: &LoaderOptions, teacher: &mut Option<String>) -> Result<()> {
    let query_ids = string_column(batch, 0);
    let positives = batch.column(1).as_primitive::<Int32Type>();
    let labels = batch.column(2).as_list::<i32>();
    let teachers = string_column(batch, 3);
    let scores = batch.column(4).as_list::<i32>();
    let invalid_group = |row: usize, message: String| {
        Err(ModelError::InvalidArgument(format!(
            "group set {:?}, query {:?}: {message}",
            options.groups,
            query_ids.value(row)
        )))
    };

    for row in 0..batch.num_rows() {
        let members = labels.value_length(row) as usize;
        let positive_count = positives.value(row).max(0) as usize;
        if positive_count == 0 {
            return invalid_group(row, "the group has no positive".into());
        }
        let negatives = members.saturating_sub(positive_count);
        if negatives + 1 < options.group_size {
            return invalid_group(
                row,
                format!(
                    "group size {} needs {} negatives but the pool has {negatives}; lower --group-size or \
                     pack with --min-negatives {}",
                    options.group_size,
                    options.group_size - 1,
                    options.group_size - 1
                ),
            );
        }
        if !options.with_teacher {
            continue;
        }
        if teachers.is_null(row) || scores.is_null(row) {
            return invalid_group(
                row,
                "the loss needs teacher scores, but the group set was packed without --teacher".into(),
            );
        }
        *teacher = Some(teachers.value(row).to_string());
        let values = scores.value(row);
        let values = values.as_primitive::<Float32Type>();
        if let Some(index) = values.values().iter().position(|score| !score.is_finite()) {
            return invalid_group(
                row,
                format!(
                    "teacher score {} of member {index} is not finite",
                    values.value(index)
                ),
            );
        }
    }
    Ok(())
}

/// Streams batches for epochs `first_epoch..` on a background task, skipping the first
/// `skip_batches` batches of the first epoch. The receiver ends after `total_batches` batches
/// or at the first error.
pub fn spawn_loader(
    store: Store,
    model: Arc<CrossEncoder>,
    options: LoaderOptions,
    info: GroupSetInfo,
    first_epoch: usize,
    skip_batches: usize,
    total_batches: usize,
    prefetch: usize,
) -> mpsc::Receiver<Result<(usize, TrainBatch)>> {
    let (sender, receiver) = mpsc::channel(prefetch.max(1));
    tokio::spawn(async move {
        let loader = Loader {
            store,
            model,
            options,
            info,
            sender,
        };
        if let Err(error) = loader.run(first_epoch, skip_batches, total_batches).await {
            let _ = loader.sender.send(Err(error)).await;
        }
    });
    receiver
}

struct Loader {
    store: Store,
    model: Arc<CrossEncoder>,
    options: LoaderOptions,
    info: GroupSetInfo,
    sender: mpsc::Sender<Result<(usize, TrainBatch)>>,
}

impl Loader {
    async fn run(&self, first_epoch: usize, skip_batches: usize, total_batches: usize) -> Result<()> {
        let mut sent = 0;
        let mut epoch = first_epoch;
        let mut skip = skip_batches;
        while sent < total_batches {
            let limit = (self.info.batches_per_epoch - skip).min(total_batches - sent);
            let delivered = self.run_epoch(epoch, skip, limit).await?;
            if delivered == usize::MAX {
                return Ok(());
            }
            sent += delivered;
            epoch += 1;
            skip = 0;
        }
        Ok(())
    }

    /// Sends `limit` batches of `epoch` after skipping `skip`; returns `usize::MAX` when the
    /// receiver was dropped.
    async fn run_epoch(&self, epoch: usize, skip: usize, limit: usize) -> Result<usize> {
        let mut groups = self.shuffled_groups(epoch).await?;
        let mut pending = Vec::with_capacity(self.options.queries_per_batch);
        let (mut index, mut sent) = (0usize, 0usize);
        while sent < limit {
            let Some(group) = groups.next().await? else {
                break;
            };
            pending.push(group);
            if pending.len() < self.options.queries_per_batch {
                continue;
            }
            let batch_groups = std::mem::take(&mut pending);
            index += 1;
            if index <= skip {
                continue;
            }
            let batch = self.make_batch(epoch, &batch_groups)?;
            if self.sender.send(Ok((epoch, batch))).await.is_err() {
                return Ok(usize::MAX);
            }
            sent += 1;
        }
        Ok(sent)
    }

    async fn shuffled_groups(&self, epoch: usize) -> Result<ShuffledGroups> {
        let seed = mix(self.options.seed, &("fragments", epoch));
        let order = move |count: usize| {
            let mut order: Vec<usize> = (0..count).collect();
            order.shuffle(&mut StdRng::seed_from_u64(seed));
            order
        };
        let filter = self.options.filter();
        let batches = self
            .store
            .scan_fragments(
                Table::Groups,
                None,
                Some(&ALL_COLUMNS),
                Some(&filter),
                Some(&order),
            )
            .await?;
        Ok(ShuffledGroups {
            store: self.store.clone(),
            batches,
            buffer: Vec::with_capacity(self.options.shuffle_buffer),
            capacity: self.options.shuffle_buffer,
            rng: StdRng::seed_from_u64(mix(self.options.seed, &("buffer", epoch, self.options.rank))),
            position: 0,
            world_size: self.options.world_size,
            rank: self.options.rank,
            exhausted: false,
        })
    }

    /// Samples each group's members and tokenizes the batch.
    fn make_batch(&self, epoch: usize, groups: &[Group]) -> Result<TrainBatch> {
        let size = self.options.group_size;
        let mut pairs = Vec::with_capacity(groups.len() * size);
        let mut labels = Vec::with_capacity(groups.len() * size);
        let mut teacher = Vec::with_capacity(groups.len() * size);
        for group in groups {
            let members = sample_members(
                group,
                size,
                mix(self.options.seed, &("sample", epoch, &group.query_id)),
            );
            for member in members {
                pairs.push((group.query_text.as_str(), group.texts[member].as_str()));
                labels.push(group.labels[member] as f32);
                if let Some(scores) = &group.teacher_scores {
                    teacher.push(scores[member]);
                }
            }
        }

        let device = self.model.device();
        let shape = (groups.len(), size);
        let teacher = match self.options.with_teacher {
            true => Some(Tensor::from_vec(teacher, shape, device)?),
            false => None,
        };
        Ok(TrainBatch {
            pairs: self.model.tokenize(&pairs, self.options.max_len)?,
            labels: Tensor::from_vec(labels, shape, device)?,
            teacher,
            query_ids: groups.iter().map(|group| group.query_id.clone()).collect(),
        })
    }
}

/// Picks one positive and `size − 1` distinct negatives; the positive comes first.
fn sample_members(group: &Group, size: usize, seed: u64) -> Vec<usize> {
    let mut rng = StdRng::seed_from_u64(seed);
    let positive = rng.random_range(0..group.positives);
    let negatives = group.texts.len() - group.positives;
    let mut members = vec![positive];
    let picked = rand::seq::index::sample(&mut rng, negatives, size - 1);
    members.extend(picked.into_iter().map(|index| group.positives + index));
    members
}

/// Derives a seed from the run's seed and a key, stable within one build of the program.
fn mix(seed: u64, key: &impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    seed.hash(&mut hasher);
    key.hash(&mut hasher);
    hasher.finish()
}

/// This rank's share of the table's groups in fragment order, passed through a shuffle buffer:
/// once the buffer is full, each new group replaces a randomly chosen buffered one, which is
/// emitted.
struct ShuffledGroups {
    store: Store,
    batches: rankdistill_store::deps::datafusion::physical_plan::SendableRecordBatchStream,
    buffer: Vec<Group>,
    capacity: usize,
    rng: StdRng,
    /// Index of the next group in the full stream, for the rank's share.
    position: usize,
    world_size: usize,
    rank: usize,
    exhausted: bool,
}

impl ShuffledGroups {
    async fn next(&mut self) -> Result<Option<Group>> {
        while !self.exhausted && self.buffer.len() < self.capacity {
            self.fill().await?;
        }
        if self.buffer.is_empty() {
            return Ok(None);
        }
        let index = self.rng.random_range(0..self.buffer.len());
        Ok(Some(self.buffer.swap_remove(index)))
    }

    /// Reads one Lance batch and keeps this rank's groups.
    async fn fill(&mut self) -> Result<()> {
        let next = self.batches.try_next().await;
        let Some(batch) = next.map_err(|e| self.store.read_error(Table::Groups, e))? else {
            self.exhausted = true;
            return Ok(());
        };
        for row in 0..batch.num_rows() {
            let position = self.position;
            self.position += 1;
            if position % self.world_size == self.rank {
                self.buffer.push(read_group(&batch, row));
            }
        }
        Ok(())
    }
}

fn read_group(batch: &RecordBatch, row: usize) -> Group {
    let strings = |index: usize| -> Vec<String> {
        let list = batch.column(index).as_list::<i32>().value(row);
        let values = list.as_string::<i32>();
        (0..values.len()).map(|i| values.value(i).to_string()).collect()
    };
    let labels = batch.column(4).as_list::<i32>().value(row);
    let scores = batch.column(5).as_list::<i32>();
    Group {
        query_id: string_column(batch, 0).value(row).to_string(),
        query_text: string_column(batch, 1).value(row).to_string(),
        positives: batch.column(2).as_primitive::<Int32Type>().value(row) as usize,
        texts: strings(3),
        labels: labels.as_primitive::<Int32Type>().values().to_vec(),
        teacher_scores: (!scores.is_null(row))
            .then(|| scores.value(row).as_primitive::<Float32Type>().values().to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(positives: usize, members: usize) -> Group {
        Group {
            query_id: "q".into(),
            query_text: "query".into(),
            positives,
            texts: (0..members).map(|i| format!("passage {i}")).collect(),
            labels: (0..members).map(|i| i32::from(i < positives)).collect(),
            teacher_scores: None,
        }
    }

    #[test]
    fn sampled_group_starts_with_a_positive() {
        let group = group(2, 10);
        for seed in 0..50 {
            let members = sample_members(&group, 8, seed);
            assert_eq!(members.len(), 8);
            assert!(members[0] < 2, "member 0 is a positive");
            assert!(members[1..].iter().all(|m| *m >= 2), "the others are negatives");
            let mut distinct = members.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(distinct.len(), 8, "members are distinct");
        }
    }

    #[test]
    fn sampling_is_seeded() {
        let group = group(1, 30);
        assert_eq!(sample_members(&group, 8, 5), sample_members(&group, 8, 5));
        assert_ne!(sample_members(&group, 8, 5), sample_members(&group, 8, 6));
    }
}
