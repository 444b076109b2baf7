//! Producing through topic handles.
//!
//! rust-rdkafka's `send` names the topic, and librdkafka then looks the
//! name up for every record under the client's *write* lock, the lock its
//! broker threads take to read the client's state. At a million variants a
//! commit writes tens of thousands of changelog records, and a worker slept
//! on that lock about 700 times in three seconds (`perf record -e
//! sched:sched_switch`, BENCHMARKS.md). A [`TopicHandle`] is looked up once;
//! [`send`] produces through it with `rd_kafka_produceva`, as rust-rdkafka
//! does by name: the key and value copied, the headers handed over, the
//! delivery reported to the producer's context with no opaque.

use std::ffi::CString;
use std::ptr::{self, NonNull};
use std::sync::OnceLock;

use rdkafka::bindings as rd;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{Producer, ProducerContext, ThreadedProducer};

/// A producer's handle on one topic. Dropped before its producer (it holds
/// a reference librdkafka expects back before the client is destroyed).
pub struct TopicHandle {
    rkt: NonNull<rd::rd_kafka_topic_t>,
}

// SAFETY: librdkafka's topic handles may be used from any thread; the
// handle is only read (produced through) and destroyed once, in `drop`.
unsafe impl Send for TopicHandle {}
// SAFETY: as above; producing through a handle takes librdkafka's locks.
unsafe impl Sync for TopicHandle {}

impl TopicHandle {
    /// A handle on `name` for `producer`; `None` if librdkafka refuses the
    /// name (then records are sent by name, and fail there with its error).
    pub fn new<C: ProducerContext>(producer: &ThreadedProducer<C>, name: &str) -> Option<Self> {
        let cname = CString::new(name).ok()?;
        // SAFETY: the client pointer lives as long as `producer`, which
        // outlives the handle (see the type's note); a null configuration
        // takes the producer's topic defaults, as a send by name does.
        let rkt = unsafe {
            rd::rd_kafka_topic_new(
                producer.client().native_ptr(),
                cname.as_ptr(),
                ptr::null_mut(),
            )
        };
        NonNull::new(rkt).map(|rkt| TopicHandle { rkt })
    }
}

/// Handles on the topics a producer writes, each made when the first
/// record goes to it: a handle makes librdkafka ask for the topic's
/// metadata, which must not happen for a topic nothing is written to (a
/// broker may create a topic it is asked about).
pub struct TopicHandles {
    topics: Vec<(String, OnceLock<Option<TopicHandle>>)>,
}

impl TopicHandles {
    /// Handles on `names`, none made yet.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        TopicHandles {
            topics: (names.into_iter())
                .map(|name| (name.to_owned(), OnceLock::new()))
                .collect(),
        }
    }

    /// The handle on `name` for `producer`, made now if this is the first
    /// record to it; `None` for a topic not named at the start, or one
    /// librdkafka refuses a handle.
    pub fn get<C: ProducerContext>(
        &self,
        producer: &ThreadedProducer<C>,
        name: &str,
    ) -> Option<&TopicHandle> {
        let (_, handle) = self.topics.iter().find(|(n, _)| n == name)?;
        handle
            .get_or_init(|| TopicHandle::new(producer, name))
            .as_ref()
    }
}

impl Drop for TopicHandle {
    fn drop(&mut self) {
        // SAFETY: the handle came from `rd_kafka_topic_new` and is
        // destroyed once.
        unsafe { rd::rd_kafka_topic_destroy(self.rkt.as_ptr()) };
    }
}

/// Sends one record through `topic`: to `partition`, or where the
/// producer's partitioner puts its key when `None`. Returns the error
/// librdkafka gives when it does not take the record (a full queue among
/// them).
pub fn send<C: ProducerContext>(
    producer: &ThreadedProducer<C>,
    topic: &TopicHandle,
    partition: Option<i32>,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[(&str, Option<&[u8]>)],
) -> Result<(), KafkaError> {
    let memory = |bytes: Option<&[u8]>| rd::rd_kafka_vu_s__bindgen_ty_1 {
        mem: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
            ptr: bytes.map_or(ptr::null_mut(), |b| b.as_ptr().cast_mut().cast()),
            size: bytes.map_or(0, <[u8]>::len),
        },
    };
    let vu = |vtype, u| rd::rd_kafka_vu_t { vtype, u };
    use rd::rd_kafka_vtype_t::*;
    let mut vus = [
        vu(
            RD_KAFKA_VTYPE_RKT,
            rd::rd_kafka_vu_s__bindgen_ty_1 {
                rkt: topic.rkt.as_ptr(),
            },
        ),
        vu(
            RD_KAFKA_VTYPE_PARTITION,
            rd::rd_kafka_vu_s__bindgen_ty_1 {
                i32_: partition.unwrap_or(-1),
            },
        ),
        vu(
            RD_KAFKA_VTYPE_MSGFLAGS,
            rd::rd_kafka_vu_s__bindgen_ty_1 {
                i: rd::RD_KAFKA_MSG_F_COPY,
            },
        ),
        vu(RD_KAFKA_VTYPE_VALUE, memory(value)),
        vu(RD_KAFKA_VTYPE_KEY, memory(key)),
        vu(
            RD_KAFKA_VTYPE_HEADERS,
            rd::rd_kafka_vu_s__bindgen_ty_1 {
                headers: ptr::null_mut(),
            },
        ),
    ];
    let mut count = vus.len() - 1;
    let mut list = ptr::null_mut();
    if !headers.is_empty() {
        // SAFETY: a new list, handed to librdkafka with the record or
        // destroyed below if the record is refused.
        list = unsafe { rd::rd_kafka_headers_new(headers.len()) };
        for (name, value) in headers {
            let (value, size) = value.map_or((ptr::null(), 0), |v| (v.as_ptr().cast(), v.len()));
            // SAFETY: the name and value are copied; sizes are given, so
            // neither needs a terminator.
            unsafe {
                rd::rd_kafka_header_add(
                    list,
                    name.as_ptr().cast(),
                    name.len() as isize,
                    value,
                    size as isize,
                )
            };
        }
        vus[count].u.headers = list;
        count += 1;
    }
    // SAFETY: `vus` describes the record with pointers valid for the call
    // (librdkafka copies the key and value, RD_KAFKA_MSG_F_COPY); on
    // success it owns the header list.
    let error =
        unsafe { rd::rd_kafka_produceva(producer.client().native_ptr(), vus.as_ptr(), count) };
    if error.is_null() {
        return Ok(());
    }
    // SAFETY: an error object from the call, read then destroyed once;
    // the refused record's header list is still ours.
    let code = unsafe {
        let code = rd::rd_kafka_error_code(error);
        rd::rd_kafka_error_destroy(error);
        if !list.is_null() {
            rd::rd_kafka_headers_destroy(list);
        }
        code
    };
    Err(KafkaError::MessageProduction(RDKafkaErrorCode::from(code)))
}
