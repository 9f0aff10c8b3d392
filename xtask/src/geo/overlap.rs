//! Making input ranges disjoint before they go into the MMDB tree.

/// A stretch of addresses with one answer, after overlaps are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// First address (128-bit space, IPv4 under `::/96`).
    pub start: u128,
    /// Last address.
    pub end: u128,
    /// Index into the record list.
    pub record: usize,
}

/// Makes rows disjoint. Where rows overlap, the narrower row wins (as the more specific route
/// does in routing), and between equally wide rows the later one in the input. Returns the
/// segments in address order and the groups of overlapping rows (indices into `rows`).
///
/// The published lists are meant to be disjoint; `@ip-location-db/asn` 2.3.2026061719 has one
/// overlap (214.95.0.0-215.0.255.255 AS749 and 215.0.0.0-215.1.3.255 AS721).
pub fn resolve(rows: &[Segment]) -> (Vec<Segment>, Vec<Vec<usize>>) {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| rows[i].start); // stable: input order among equal starts
    let mut segments = Vec::with_capacity(rows.len());
    let mut groups = Vec::new();
    let mut i = 0;
    while i < order.len() {
        // A cluster: rows chained by overlap.
        let mut end = rows[order[i]].end;
        let mut j = i + 1;
        while j < order.len() && rows[order[j]].start <= end {
            end = end.max(rows[order[j]].end);
            j += 1;
        }
        let cluster = &order[i..j];
        if cluster.len() == 1 {
            segments.push(rows[cluster[0]]);
        } else {
            groups.push(cluster.to_vec());
            let mut points: Vec<u128> =
                cluster.iter().flat_map(|&k| [Some(rows[k].start), rows[k].end.checked_add(1)]).flatten().collect();
            points.sort_unstable();
            points.dedup();
            for (n, &from) in points.iter().enumerate() {
                if from > end {
                    break;
                }
                let to = points.get(n + 1).map_or(end, |next| next - 1);
                let winner = cluster
                    .iter()
                    .filter(|&&k| rows[k].start <= from && rows[k].end >= from)
                    .min_by_key(|&&k| (rows[k].end - rows[k].start, std::cmp::Reverse(k)));
                if let Some(&k) = winner {
                    segments.push(Segment { start: from, end: to, record: rows[k].record });
                }
            }
        }
        i = j;
    }
    (segments, groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_keeps_disjoint_rows_as_they_are() {
        let rows = [Segment { start: 5, end: 9, record: 0 }, Segment { start: 0, end: 4, record: 1 }];
        let (segments, groups) = resolve(&rows);
        assert_eq!(segments, [rows[1], rows[0]]);
        assert!(groups.is_empty());
    }

    #[test]
    fn resolve_handles_the_top_of_the_space() {
        let rows =
            [Segment { start: 0, end: u128::MAX, record: 0 }, Segment { start: u128::MAX, end: u128::MAX, record: 1 }];
        let (segments, _) = resolve(&rows);
        assert_eq!(
            segments,
            [
                Segment { start: 0, end: u128::MAX - 1, record: 0 },
                Segment { start: u128::MAX, end: u128::MAX, record: 1 }
            ]
        );
    }
}
