//! Text tables as `kubectl get` prints them: each column as wide as its widest cell, three
//! spaces between columns, the last one unpadded (pure).

/// `header` and `rows` (each as many cells as the header) as lines.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        let last = cells.len().saturating_sub(1);
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(cell);
                out.push_str(&" ".repeat(w - cell.chars().count() + 3));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_their_widest_cell() {
        let rows = vec![
            vec![
                "abcdef".to_string(),
                "a very long description".into(),
                "x".into(),
            ],
            vec!["ghijkl".to_string(), "short".into(), "".into()],
        ];
        let text = render(&["TOKEN", "DESCRIPTION", "LAST"], &rows);
        assert_eq!(
            text,
            "TOKEN    DESCRIPTION               LAST\n\
             abcdef   a very long description   x\n\
             ghijkl   short\n"
        );
    }
}
