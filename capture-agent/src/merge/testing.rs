//! Test helpers: capture files built block by block in either byte order, so the readers can be
//! fed every variant (obsolete blocks, odd resolutions, damage) without a capture tool.

use super::byte_order::ByteOrder;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Order {
    Little,
    Big,
}

impl Order {
    pub(super) fn byte_order(self) -> ByteOrder {
        match self {
            Order::Little => ByteOrder::Little,
            Order::Big => ByteOrder::Big,
        }
    }

    pub(super) fn u16_bytes(self, v: u16) -> [u8; 2] {
        match self {
            Order::Little => v.to_le_bytes(),
            Order::Big => v.to_be_bytes(),
        }
    }

    pub(super) fn u32_bytes(self, v: u32) -> [u8; 4] {
        match self {
            Order::Little => v.to_le_bytes(),
            Order::Big => v.to_be_bytes(),
        }
    }

    pub(super) fn u64_bytes(self, v: u64) -> [u8; 8] {
        match self {
            Order::Little => v.to_le_bytes(),
            Order::Big => v.to_be_bytes(),
        }
    }

    fn timestamp_bytes(self, v: u64) -> Vec<u8> {
        [self.u32_bytes((v >> 32) as u32), self.u32_bytes(v as u32)].concat()
    }
}

/// Appends pcapng blocks or pcap records to `bytes`.
pub(super) struct BlockWriter {
    pub(super) order: Order,
    pub(super) bytes: Vec<u8>,
}

fn pad(body: &mut Vec<u8>) {
    body.resize(body.len().next_multiple_of(4), 0);
}

impl BlockWriter {
    pub(super) fn new(order: Order) -> BlockWriter {
        BlockWriter {
            order,
            bytes: Vec::new(),
        }
    }

    fn options(&self, body: &mut Vec<u8>, options: &[(u16, Vec<u8>)]) {
        if options.is_empty() {
            return;
        }
        for (code, value) in options {
            body.extend(self.order.u16_bytes(*code));
            body.extend(self.order.u16_bytes(value.len() as u16));
            body.extend(value);
            pad(body);
        }
        body.extend([0; 4]);
    }

    pub(super) fn block(&mut self, block_type: u32, body: &[u8]) {
        let len = (body.len() + 12) as u32;
        self.bytes.extend(self.order.u32_bytes(block_type));
        self.bytes.extend(self.order.u32_bytes(len));
        self.bytes.extend(body);
        self.bytes.extend(self.order.u32_bytes(len));
    }

    pub(super) fn section_header(&mut self) {
        let mut body = Vec::new();
        body.extend(self.order.u32_bytes(0x1A2B_3C4D));
        body.extend(self.order.u16_bytes(1));
        body.extend(self.order.u16_bytes(0));
        body.extend((-1i64).to_le_bytes());
        self.block(0x0A0D_0D0A, &body);
    }

    pub(super) fn interface_with(
        &mut self,
        link_type: u16,
        snap_len: u32,
        options: &[(u16, Vec<u8>)],
    ) {
        let mut body = Vec::new();
        body.extend(self.order.u16_bytes(link_type));
        body.extend([0; 2]);
        body.extend(self.order.u32_bytes(snap_len));
        self.options(&mut body, options);
        self.block(1, &body);
    }

    /// An Ethernet interface with a name and a resolution.
    pub(super) fn interface(&mut self, name: &str, tsresol: u8) {
        self.interface_with(
            1,
            262_144,
            &[(2, name.as_bytes().to_vec()), (9, vec![tsresol])],
        );
    }

    pub(super) fn enhanced_packet(
        &mut self,
        interface: u32,
        raw_timestamp: u64,
        data: &[u8],
        original_len: u32,
        flags: Option<u32>,
    ) {
        let mut body = Vec::new();
        body.extend(self.order.u32_bytes(interface));
        body.extend(self.order.timestamp_bytes(raw_timestamp));
        body.extend(self.order.u32_bytes(data.len() as u32));
        body.extend(self.order.u32_bytes(original_len));
        body.extend(data);
        pad(&mut body);
        let options: Vec<(u16, Vec<u8>)> = flags
            .map(|f| (2, self.order.u32_bytes(f).to_vec()))
            .into_iter()
            .collect();
        self.options(&mut body, &options);
        self.block(6, &body);
    }

    pub(super) fn obsolete_packet(
        &mut self,
        interface: u16,
        raw_timestamp: u64,
        data: &[u8],
        original_len: u32,
        flags: Option<u32>,
    ) {
        let mut body = Vec::new();
        body.extend(self.order.u16_bytes(interface));
        body.extend(self.order.u16_bytes(0));
        body.extend(self.order.timestamp_bytes(raw_timestamp));
        body.extend(self.order.u32_bytes(data.len() as u32));
        body.extend(self.order.u32_bytes(original_len));
        body.extend(data);
        pad(&mut body);
        let options: Vec<(u16, Vec<u8>)> = flags
            .map(|f| (2, self.order.u32_bytes(f).to_vec()))
            .into_iter()
            .collect();
        self.options(&mut body, &options);
        self.block(2, &body);
    }

    pub(super) fn simple_packet(&mut self, data: &[u8], original_len: u32) {
        let mut body = Vec::new();
        body.extend(self.order.u32_bytes(original_len));
        body.extend(data);
        pad(&mut body);
        self.block(3, &body);
    }

    pub(super) fn statistics(
        &mut self,
        interface: u32,
        raw_at: u64,
        counters: &[(u16, u64)],
        raw_start: Option<u64>,
        raw_end: Option<u64>,
    ) {
        let mut body = Vec::new();
        body.extend(self.order.u32_bytes(interface));
        body.extend(self.order.timestamp_bytes(raw_at));
        let mut options = Vec::new();
        if let Some(start) = raw_start {
            options.push((2, self.order.timestamp_bytes(start)));
        }
        if let Some(end) = raw_end {
            options.push((3, self.order.timestamp_bytes(end)));
        }
        for (code, value) in counters {
            options.push((*code, self.order.u64_bytes(*value).to_vec()));
        }
        self.options(&mut body, &options);
        self.block(5, &body);
    }

    pub(super) fn pcap_header(&mut self, nanoseconds: bool, link_type: u32, snap_len: u32) {
        let magic: u32 = if nanoseconds {
            0xa1b2_3c4d
        } else {
            0xa1b2_c3d4
        };
        self.bytes.extend(self.order.u32_bytes(magic));
        self.bytes.extend(self.order.u16_bytes(2));
        self.bytes.extend(self.order.u16_bytes(4));
        self.bytes.extend([0; 8]);
        self.bytes.extend(self.order.u32_bytes(snap_len));
        self.bytes.extend(self.order.u32_bytes(link_type));
    }

    pub(super) fn pcap_record(
        &mut self,
        seconds: u32,
        fraction: u32,
        data: &[u8],
        original_len: u32,
    ) {
        for word in [seconds, fraction, data.len() as u32, original_len] {
            self.bytes.extend(self.order.u32_bytes(word));
        }
        self.bytes.extend(data);
    }
}
