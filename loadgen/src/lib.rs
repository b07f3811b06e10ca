//! The faultline load generator: open-model and closed-model HTTP load, latency recorded
//! in HdrHistogram from the intended send time. (Being written; see the load-generator issue.)
