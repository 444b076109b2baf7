//! A topic's id (KIP-516), through librdkafka's DescribeTopics, which
//! rust-rdkafka does not wrap yet.

use std::ffi::CString;
use std::time::Duration;

use rdkafka::ClientContext;

/// Why a topic's id could not be had.
#[derive(Debug, thiserror::Error)]
#[error("cannot describe topic {topic:?}: {reason}")]
pub struct DescribeError {
    /// The topic.
    pub topic: String,
    /// librdkafka's explanation.
    pub reason: String,
}

/// The topic id of `topic` (KIP-516), base64 as Kafka's tools print it, or
/// `None` when the broker reports no ids (brokers before Kafka 2.8, and
/// Kafka-protocol servers that leave it zero). A topic deleted and created
/// again under the same name gets a new id, so its offsets start over.
///
/// rust-rdkafka has no DescribeTopics yet, so this calls librdkafka's
/// `rd_kafka_DescribeTopics` directly and waits up to `timeout` for it.
pub fn topic_id<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Option<String>, DescribeError> {
    use rdkafka::bindings as rd;
    use std::ffi::CStr;
    let failed = |reason: String| DescribeError {
        topic: topic.to_owned(),
        reason,
    };
    let name = CString::new(topic).map_err(|_| failed("the name contains a NUL byte".into()))?;
    let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);

    /// Frees what librdkafka allocated, whatever way the call ends.
    struct Owned {
        queue: *mut rd::rd_kafka_queue_t,
        options: *mut rd::rd_kafka_AdminOptions_t,
        topics: *mut rd::rd_kafka_TopicCollection_t,
        event: *mut rd::rd_kafka_event_t,
    }
    impl Drop for Owned {
        fn drop(&mut self) {
            // SAFETY: each pointer is null or was returned by the matching
            // librdkafka constructor and is destroyed once, here.
            unsafe {
                if !self.event.is_null() {
                    rd::rd_kafka_event_destroy(self.event);
                }
                if !self.topics.is_null() {
                    rd::rd_kafka_TopicCollection_destroy(self.topics);
                }
                if !self.options.is_null() {
                    rd::rd_kafka_AdminOptions_destroy(self.options);
                }
                if !self.queue.is_null() {
                    rd::rd_kafka_queue_destroy(self.queue);
                }
            }
        }
    }

    // SAFETY: the client pointer lives as long as `client`; every object
    // created here is owned by `owned` and freed when it drops, after the
    // last read of the event's contents (the strings are copied out first).
    unsafe {
        let rk = client.native_ptr();
        let mut names = [name.as_ptr()];
        let mut owned = Owned {
            queue: rd::rd_kafka_queue_new(rk),
            options: rd::rd_kafka_AdminOptions_new(
                rk,
                rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
            ),
            topics: rd::rd_kafka_TopicCollection_of_topic_names(names.as_mut_ptr(), 1),
            event: std::ptr::null_mut(),
        };
        let mut errstr = [0 as std::ffi::c_char; 256];
        rd::rd_kafka_AdminOptions_set_request_timeout(
            owned.options,
            millis,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        rd::rd_kafka_DescribeTopics(rk, owned.topics, owned.options, owned.queue);
        owned.event = rd::rd_kafka_queue_poll(owned.queue, millis.saturating_add(1000));
        if owned.event.is_null() {
            return Err(failed(format!("no answer within {timeout:?}")));
        }
        if rd::rd_kafka_event_error(owned.event)
            != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        {
            let reason = CStr::from_ptr(rd::rd_kafka_event_error_string(owned.event));
            return Err(failed(reason.to_string_lossy().into_owned()));
        }
        let result = rd::rd_kafka_event_DescribeTopics_result(owned.event);
        if result.is_null() {
            return Err(failed("the answer is not a DescribeTopics result".into()));
        }
        let mut count = 0usize;
        let descriptions = rd::rd_kafka_DescribeTopics_result_topics(result, &mut count);
        if descriptions.is_null() || count == 0 {
            return Err(failed("the broker described no topic".into()));
        }
        let description = *descriptions;
        let error = rd::rd_kafka_TopicDescription_error(description);
        if !error.is_null()
            && rd::rd_kafka_error_code(error) != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        {
            let reason = CStr::from_ptr(rd::rd_kafka_error_string(error));
            return Err(failed(reason.to_string_lossy().into_owned()));
        }
        let id = rd::rd_kafka_TopicDescription_topic_id(description);
        if id.is_null()
            || (rd::rd_kafka_Uuid_most_significant_bits(id) == 0
                && rd::rd_kafka_Uuid_least_significant_bits(id) == 0)
        {
            return Ok(None);
        }
        let text = CStr::from_ptr(rd::rd_kafka_Uuid_base64str(id));
        Ok(Some(text.to_string_lossy().into_owned()))
    }
}
