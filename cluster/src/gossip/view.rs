//! The membership view `Gossip::members` publishes, kept by node id across generations.
//!
//! foca forgets or renames identities it no longer needs; operators still want to see a node that
//! went down. The view remembers the newest generation seen for every node id and its last state,
//! and ignores anything foca says about an older generation. It is pure: no I/O, no clock.

use std::collections::BTreeMap;

use super::identity::NodeId;
use super::status::Status;
use super::{Member, MemberState};

#[derive(Debug, Default)]
pub(crate) struct View {
    own_id: String,
    by_id: BTreeMap<String, Entry>,
}

#[derive(Debug)]
struct Entry {
    generation: u64,
    member: Member,
}

impl View {
    pub(crate) fn new(own_id: String) -> Self {
        Self {
            own_id,
            by_id: BTreeMap::new(),
        }
    }

    /// Records what foca currently believes about `id`. Returns whether the view changed.
    pub(crate) fn observe(&mut self, id: &NodeId, state: foca::State) -> bool {
        if id.id == self.own_id {
            // Earlier runs of ourselves (other addresses, older generations) are not members.
            return false;
        }
        let state = match state {
            foca::State::Alive => MemberState::Alive,
            foca::State::Suspect => MemberState::Suspect,
            foca::State::Down => MemberState::Down,
        };
        match self.by_id.get_mut(&id.id) {
            Some(entry) if entry.generation > id.generation => false,
            Some(entry) if entry.generation == id.generation => {
                let changed = entry.member.state != state;
                entry.member.state = state;
                changed
            }
            _ => {
                let member = Member {
                    info: id.info(),
                    gossip_addr: id.addr,
                    state,
                    revision: None,
                };
                self.by_id.insert(
                    id.id.clone(),
                    Entry {
                        generation: id.generation,
                        member,
                    },
                );
                true
            }
        }
    }

    /// Records the statuses known so far: a member shows the revision its current generation
    /// last said. Returns whether the view changed.
    pub(crate) fn observe_statuses<'a>(
        &mut self,
        statuses: impl IntoIterator<Item = &'a Status>,
    ) -> bool {
        let mut changed = false;
        for status in statuses {
            if let Some(entry) = self.by_id.get_mut(&status.id)
                && entry.generation == status.generation
                && entry.member.revision != Some(status.revision)
            {
                entry.member.revision = Some(status.revision);
                changed = true;
            }
        }
        changed
    }

    /// Every known node but ourselves, ordered by id.
    pub(crate) fn members(&self) -> Vec<Member> {
        self.by_id
            .values()
            .map(|entry| entry.member.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use foca::State;

    use super::*;

    fn node(id: &str, port: u16, generation: u64) -> NodeId {
        NodeId {
            id: id.to_owned(),
            generation,
            region: "eu".to_owned(),
            ..NodeId::seed(SocketAddr::from(([127, 0, 0, 1], port)))
        }
    }

    fn states(view: &View) -> Vec<(String, u16, MemberState)> {
        view.members()
            .into_iter()
            .map(|m| (m.info.id, m.gossip_addr.port(), m.state))
            .collect()
    }

    fn check(events: &[(NodeId, State)], expected: &[(&str, u16, MemberState)]) {
        let mut view = View::new("self".to_owned());
        for (id, state) in events {
            view.observe(id, *state);
        }
        let expected: Vec<_> = expected
            .iter()
            .map(|(id, port, state)| ((*id).to_owned(), *port, *state))
            .collect();
        assert_eq!(states(&view), expected);
    }

    #[test]
    fn follows_one_generation_through_its_states() {
        use MemberState::*;
        let a = node("a", 1, 1);
        check(&[(a.clone(), State::Alive)], &[("a", 1, Alive)]);
        check(
            &[(a.clone(), State::Alive), (a.clone(), State::Suspect)],
            &[("a", 1, Suspect)],
        );
        check(
            &[(a.clone(), State::Suspect), (a.clone(), State::Down)],
            &[("a", 1, Down)],
        );
    }

    #[test]
    fn a_newer_generation_on_a_new_address_revives_a_down_node() {
        use MemberState::*;
        check(
            &[
                (node("a", 1, 1), State::Down),
                (node("a", 2, 2), State::Alive),
            ],
            &[("a", 2, Alive)],
        );
    }

    #[test]
    fn news_about_an_older_generation_is_ignored() {
        use MemberState::*;
        check(
            &[
                (node("a", 2, 2), State::Alive),
                (node("a", 1, 1), State::Down),
            ],
            &[("a", 2, Alive)],
        );
    }

    #[test]
    fn our_own_id_never_shows() {
        check(&[(node("self", 9, 1), State::Down)], &[]);
    }

    #[test]
    fn a_member_shows_the_revision_its_current_generation_said() {
        let mut view = View::new("self".to_owned());
        view.observe(&node("a", 1, 2), State::Alive);
        let status = |generation, seq, revision| Status {
            id: "a".to_owned(),
            generation,
            seq,
            revision,
        };
        // A status of an earlier run says nothing about this one.
        assert!(!view.observe_statuses(&[status(1, 7, 40)]));
        assert_eq!(view.members()[0].revision, None);
        assert!(view.observe_statuses(&[status(2, 0, 41)]));
        assert!(!view.observe_statuses(&[status(2, 1, 41)]));
        assert_eq!(view.members()[0].revision, Some(41));
        // A status of someone the view does not know waits for the member itself.
        assert!(!view.observe_statuses(&[Status {
            id: "b".to_owned(),
            ..status(1, 0, 9)
        }]));
    }

    #[test]
    fn reports_whether_anything_changed() {
        let mut view = View::new("self".to_owned());
        assert!(view.observe(&node("a", 1, 1), State::Alive));
        assert!(!view.observe(&node("a", 1, 1), State::Alive));
        assert!(view.observe(&node("a", 1, 1), State::Suspect));
        assert!(!view.observe(&node("a", 1, 0), State::Down));
    }
}
