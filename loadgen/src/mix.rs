//! Weighted turns: which request, and which host, arrival `k` goes to.
//!
//! Smooth weighted round robin (nginx's upstream balancing) laid out once into a
//! table of one cycle, so weights 3:1 give exactly 3 and 1 of every 4 arrivals,
//! interleaved (`a a b a`, not `a a a b`), and equal weights give plain turns
//! (`a b c a b c`), as requests were sent before weights existed. Picking is one
//! modulo and one load per arrival.

/// The longest cycle a mix may have (after dividing the weights by their greatest
/// common divisor): it is one table entry per arrival of a cycle.
const MAX_CYCLE: u64 = 100_000;

/// One cycle of weighted turns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Turns {
    order: Vec<usize>,
}

impl Turns {
    /// The turns of `weights` (each at least 1). `Err` says why not.
    pub(crate) fn new(weights: &[u32]) -> Result<Turns, String> {
        if weights.is_empty() {
            return Err("nothing to choose from".into());
        }
        if let Some(position) = weights.iter().position(|w| *w == 0) {
            return Err(format!(
                "weight of entry {} is 0: weights start at 1",
                position + 1
            ));
        }
        let divisor = weights.iter().fold(0, |d, w| gcd(d, *w));
        let weights: Vec<i64> = weights.iter().map(|w| i64::from(w / divisor)).collect();
        let cycle: i64 = weights.iter().sum();
        if cycle as u64 > MAX_CYCLE {
            return Err(format!(
                "weights sum to {cycle} (after dividing by their common divisor); keep it at most {MAX_CYCLE}"
            ));
        }
        let mut current = vec![0i64; weights.len()];
        let mut order = Vec::with_capacity(cycle as usize);
        for _ in 0..cycle {
            for (c, w) in current.iter_mut().zip(&weights) {
                *c += w;
            }
            // The first of the largest, so ties go in entry order.
            let mut chosen = 0;
            for (i, c) in current.iter().enumerate() {
                if *c > current[chosen] {
                    chosen = i;
                }
            }
            current[chosen] -= cycle;
            order.push(chosen);
        }
        Ok(Turns { order })
    }

    /// How many arrivals one cycle has.
    pub(crate) fn cycle(&self) -> u64 {
        self.order.len() as u64
    }

    /// The entry arrival `index` goes to.
    pub(crate) fn at(&self, index: u64) -> usize {
        match self.order.len() {
            1 => 0,
            len => self.order[(index % len as u64) as usize],
        }
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn cycle(weights: &[u32]) -> Vec<usize> {
        let turns = Turns::new(weights).unwrap();
        (0..turns.cycle()).map(|i| turns.at(i)).collect()
    }

    #[test]
    fn equal_weights_take_plain_turns() {
        assert_eq!(cycle(&[1, 1, 1]), [0, 1, 2]);
        assert_eq!(cycle(&[5, 5]), [0, 1]);
        assert_eq!(cycle(&[7]), [0]);
    }

    #[test]
    fn weights_three_to_one_give_three_of_every_four_interleaved() {
        assert_eq!(cycle(&[3, 1]), [0, 0, 1, 0]);
        assert_eq!(cycle(&[300, 100]), [0, 0, 1, 0]);
        let counts = cycle(&[5, 1, 2]).iter().fold([0; 3], |mut c, i| {
            c[*i] += 1;
            c
        });
        assert_eq!(counts, [5, 1, 2]);
    }

    #[test]
    fn zero_weights_and_huge_cycles_are_refused() {
        assert!(Turns::new(&[1, 0]).unwrap_err().contains("entry 2"));
        assert!(Turns::new(&[100_000, 1]).unwrap_err().contains("at most"));
        assert!(Turns::new(&[]).is_err());
    }
}
