//! Three-valued logic for questions the lake can only partly answer: does this selector
//! match that workload, does this CIDR hold that peer's addresses. `Maybe` is never
//! rounded to a yes or a no: it travels up to the verdict, which then lands in `uncertain`.

/// Yes, no, or the lake cannot tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tri {
    /// Certainly not.
    No,
    /// The lake cannot decide.
    Maybe,
    /// Certainly.
    Yes,
}

impl Tri {
    /// `Yes` for true, `No` for false.
    pub fn from_bool(value: bool) -> Tri {
        if value { Tri::Yes } else { Tri::No }
    }

    /// Kleene conjunction.
    pub fn and(self, other: Tri) -> Tri {
        self.min(other)
    }

    /// Kleene disjunction.
    pub fn or(self, other: Tri) -> Tri {
        self.max(other)
    }

    /// Kleene negation.
    pub fn not(self) -> Tri {
        match self {
            Tri::No => Tri::Yes,
            Tri::Maybe => Tri::Maybe,
            Tri::Yes => Tri::No,
        }
    }

    /// Conjunction over an iterator (`Yes` when empty).
    pub fn all(items: impl IntoIterator<Item = Tri>) -> Tri {
        items.into_iter().fold(Tri::Yes, Tri::and)
    }

    /// Disjunction over an iterator (`No` when empty).
    pub fn any(items: impl IntoIterator<Item = Tri>) -> Tri {
        items.into_iter().fold(Tri::No, Tri::or)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kleene_tables() {
        use Tri::*;
        assert_eq!(Yes.and(Maybe), Maybe);
        assert_eq!(No.and(Maybe), No);
        assert_eq!(Yes.or(Maybe), Yes);
        assert_eq!(No.or(Maybe), Maybe);
        assert_eq!(Maybe.not(), Maybe);
        assert_eq!(Tri::all([]), Yes);
        assert_eq!(Tri::any([]), No);
        assert_eq!(Tri::any([No, Maybe, No]), Maybe);
    }
}
