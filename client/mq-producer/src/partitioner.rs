//! Which partition a record goes to: pure decisions, no I/O.

use mq_client::{ApiError, ClientError, ErrorCode, partition_for_key};

/// The partition of a record: `explicit` when set (checked against `partitions`), else the
/// standard key hash of `key`, else the topic's sticky partition.
pub fn choose(
    topic: &str,
    partitions: u32,
    explicit: Option<u32>,
    key: Option<&[u8]>,
    sticky: &mut Sticky,
    record_bytes: usize,
) -> Result<u32, ClientError> {
    if partitions == 0 {
        return Err(ClientError::Api(ApiError::new(
            ErrorCode::TopicNotFound,
            format!("topic '{topic}' has no partitions"),
        )));
    }
    match (explicit, key) {
        (Some(partition), _) if partition >= partitions => Err(ClientError::Api(ApiError::new(
            ErrorCode::PartitionNotFound,
            format!("partition: topic '{topic}' has {partitions} partitions, not {partition}"),
        ))),
        (Some(partition), _) => Ok(partition),
        (None, Some(key)) => Ok(partition_for_key(key, partitions)),
        (None, None) => Ok(sticky.next(partitions, record_bytes)),
    }
}

/// The sticky partitioner of one topic: keyless records go to one partition until
/// `batch_bytes` of them went there, then to the next partition (round-robin from a random
/// start), so they form full batches instead of many small ones.
#[derive(Debug, Clone)]
pub struct Sticky {
    partition: u32,
    filled: usize,
    batch_bytes: usize,
}

impl Sticky {
    pub fn new(start: u32, batch_bytes: usize) -> Self {
        Self {
            partition: start,
            filled: 0,
            batch_bytes: batch_bytes.max(1),
        }
    }

    fn next(&mut self, partitions: u32, record_bytes: usize) -> u32 {
        if self.filled >= self.batch_bytes {
            self.partition = self.partition.wrapping_add(1);
            self.filled = 0;
        }
        self.filled += record_bytes;
        self.partition % partitions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_partition_wins_and_is_checked() {
        let mut sticky = Sticky::new(0, 100);
        assert_eq!(
            choose("t", 3, Some(2), Some(b"k"), &mut sticky, 10).unwrap(),
            2
        );
        let err = choose("t", 3, Some(3), None, &mut sticky, 10).unwrap_err();
        assert_eq!(err.code(), ErrorCode::PartitionNotFound);
        assert!(!err.is_retryable());
    }

    #[test]
    fn keys_use_the_standard_hash() {
        let mut sticky = Sticky::new(0, 100);
        for key in ["a", "order-42", "foobar"] {
            assert_eq!(
                choose("t", 7, None, Some(key.as_bytes()), &mut sticky, 10).unwrap(),
                partition_for_key(key.as_bytes(), 7)
            );
        }
    }

    #[test]
    fn keyless_records_fill_a_batch_then_move_on() {
        let mut sticky = Sticky::new(1, 100);
        let picks: Vec<u32> = (0..25)
            .map(|_| choose("t", 3, None, None, &mut sticky, 10).unwrap())
            .collect();
        assert_eq!(&picks[..10], &[1; 10]);
        assert_eq!(&picks[10..20], &[2; 10]);
        assert_eq!(&picks[20..], &[0; 5]);
    }

    #[test]
    fn a_topic_without_partitions_is_not_found() {
        let mut sticky = Sticky::new(0, 100);
        let err = choose("t", 0, None, None, &mut sticky, 10).unwrap_err();
        assert_eq!(err.code(), ErrorCode::TopicNotFound);
    }
}
