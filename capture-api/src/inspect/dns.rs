//! Just enough DNS (RFC 1035) for the preview's summary of port-53 datagrams: query or
//! response, the id, the first question's type and name, and the answer code. A message that
//! does not parse yields `None`, and the row stays plain UDP.

/// DNS's well-known port.
pub const PORT: u16 = 53;

const HEADER_LEN: usize = 12;
/// RFC 1035 limits a name to 255 octets; more labels than this means a loop or garbage.
const MAX_LABELS: usize = 128;

/// "Standard query 0x1234 A example.com", or "Standard query response 0x1234 A example.com
/// NXDOMAIN"; `None` if `message` is not a DNS message with a question.
pub fn summary(message: &[u8]) -> Option<String> {
    if message.len() < HEADER_LEN {
        return None;
    }
    let id = u16::from_be_bytes([message[0], message[1]]);
    let flags = u16::from_be_bytes([message[2], message[3]]);
    let questions = u16::from_be_bytes([message[4], message[5]]);
    if questions == 0 {
        return None;
    }
    let (name, after_name) = read_name(message, HEADER_LEN)?;
    let qtype = message.get(after_name..after_name + 2)?;
    let qtype = u16::from_be_bytes([qtype[0], qtype[1]]);
    let is_response = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    let kind = match opcode {
        0 => "Standard query",
        2 => "Server status request",
        4 => "Notify",
        5 => "Dynamic update",
        _ => "Query",
    };
    let mut text = format!(
        "{kind}{} 0x{id:04x} {} {}",
        if is_response { " response" } else { "" },
        type_name(qtype),
        if name.is_empty() { "<Root>" } else { &name }
    );
    if is_response {
        match flags & 0xf {
            0 => {}
            1 => text.push_str(" FORMERR"),
            2 => text.push_str(" SERVFAIL"),
            3 => text.push_str(" NXDOMAIN"),
            4 => text.push_str(" NOTIMP"),
            5 => text.push_str(" REFUSED"),
            code => text.push_str(&format!(" rcode {code}")),
        }
    }
    Some(text)
}

/// The uncompressed name at `at` (questions come first, so no pointers are needed; a pointer
/// is still followed once, bounded) and the offset after it.
fn read_name(message: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    let mut end = None;
    for _ in 0..MAX_LABELS {
        let len = *message.get(at)? as usize;
        match len {
            0 => return Some((name, end.unwrap_or(at + 1))),
            l if l & 0xc0 == 0xc0 => {
                let low = *message.get(at + 1)? as usize;
                end.get_or_insert(at + 2);
                let target = ((l & 0x3f) << 8) | low;
                if target >= at {
                    return None;
                }
                at = target;
            }
            l if l < 64 => {
                let label = message.get(at + 1..at + 1 + l)?;
                if !name.is_empty() {
                    name.push('.');
                }
                name.extend(label.iter().map(
                    |&b| {
                        if b.is_ascii_graphic() {
                            b as char
                        } else {
                            '?'
                        }
                    },
                ));
                at += 1 + l;
            }
            _ => return None,
        }
    }
    None
}

fn type_name(qtype: u16) -> String {
    match qtype {
        1 => "A".into(),
        2 => "NS".into(),
        5 => "CNAME".into(),
        6 => "SOA".into(),
        12 => "PTR".into(),
        15 => "MX".into(),
        16 => "TXT".into(),
        28 => "AAAA".into(),
        33 => "SRV".into(),
        65 => "HTTPS".into(),
        255 => "ANY".into(),
        other => format!("TYPE{other}"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A one-question query for `name` of type `qtype`.
    pub(crate) fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut message = Vec::new();
        message.extend_from_slice(&id.to_be_bytes());
        message.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in name.split('.') {
            message.push(label.len() as u8);
            message.extend_from_slice(label.as_bytes());
        }
        message.push(0);
        message.extend_from_slice(&qtype.to_be_bytes());
        message.extend_from_slice(&1u16.to_be_bytes());
        message
    }

    #[test]
    fn queries_and_responses() {
        assert_eq!(
            summary(&query(0xbeef, "example.com", 1)).as_deref(),
            Some("Standard query 0xbeef A example.com")
        );
        let mut response = query(7, "nope.example", 28);
        response[2] = 0x81;
        response[3] = 0x83;
        assert_eq!(
            summary(&response).as_deref(),
            Some("Standard query response 0x0007 AAAA nope.example NXDOMAIN")
        );
    }

    #[test]
    fn garbage_is_not_dns() {
        assert_eq!(summary(b"short"), None);
        assert_eq!(summary(&[0u8; 12]), None, "no question");
        let mut looped = query(1, "a", 1);
        looped[12] = 0xc0;
        looped[13] = 12;
        assert_eq!(summary(&looped), None, "a pointer to itself");
        let mut cut = query(1, "example.com", 1);
        cut.truncate(16);
        assert_eq!(summary(&cut), None);
    }
}
