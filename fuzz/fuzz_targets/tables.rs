#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| memtap_fuzz::tables::run(data));
