#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| memtap_fuzz::capture::run(data));
