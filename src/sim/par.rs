//! Independent simulations on a few threads: `tune`'s candidates and the
//! seasonal fits they share. Results keep the input order, so the thread count
//! never changes an answer.

/// `f` of every item, on up to `jobs` threads, in order.
pub fn map<T: Sync, R: Send>(items: &[T], jobs: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let jobs = jobs.clamp(1, items.len().max(1));
    let chunk = items.len().div_ceil(jobs).max(1);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn order_is_kept_whatever_the_threads() {
        let items: Vec<u32> = (0..103).collect();
        let one = super::map(&items, 1, |x| x * 2);
        for jobs in [2, 3, 8, 500] {
            assert_eq!(super::map(&items, jobs, |x| x * 2), one);
        }
        assert!(super::map(&[] as &[u32], 4, |x| *x).is_empty());
    }
}
