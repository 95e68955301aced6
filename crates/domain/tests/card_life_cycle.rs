//! The card state machine against a small reference model (proptest-state-machine): random
//! sequences of every command with every reason code, checking that the card and the model agree
//! after each step, that no command ever leaves a final state, and that a card suspended for
//! CARD_STOLEN, CARD_BROKEN or FRAUD is never resumed.

use cardplane_domain::card::{Card, CardCommand, CardOrigin, CardState, InitialState, ReasonCode};
use cardplane_domain::credentials::Expiry;
use cardplane_domain::ids::{CardId, CardProductId, ConsumerId};
use cardplane_domain::scheme::Scheme;
use proptest::prelude::*;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};
use time::OffsetDateTime;

/// The model: only what decides the next step.
#[derive(Debug, Clone, PartialEq)]
struct Model {
    state: CardState,
    suspended_for: Option<ReasonCode>,
    renew_pending: bool,
}

use ReasonCode::*;

/// The rules as a table, written apart from the implementation: (operation, allowed from-states,
/// allowed reasons).
fn accepts(model: &Model, command: &CardCommand) -> bool {
    use CardState::*;
    let (from, reasons): (&[CardState], &[ReasonCode]) = match command {
        CardCommand::Activate { .. } => (&[Inactive], &[IssuerDecision, UserDecision]),
        CardCommand::Suspend { .. } => {
            (&[Active], &[CardLost, CardStolen, CardBroken, Fraud, UserDecision, IssuerDecision])
        }
        CardCommand::Resume { .. } => (&[Suspended], &[CardFound, UserDecision, IssuerDecision]),
        CardCommand::Delete { .. } => {
            (&[Inactive, Active, Suspended], &[ClosedAccount, ClosedCard, CardLost, CardStolen, Fraud, IssuerDecision])
        }
        CardCommand::Renew { .. } => (&[Inactive, Active, Suspended], &[CardExpiring, IssuerDecision]),
        CardCommand::Replace { .. } => {
            (&[Inactive, Active, Suspended], &[CardLost, CardStolen, CardBroken, Fraud, IssuerDecision])
        }
    };
    if !from.contains(&model.state) || !reasons.contains(&command.reason()) {
        return false;
    }
    match (command, model.suspended_for) {
        (CardCommand::Resume { reason }, Some(suspended_for)) => matches!(
            (suspended_for, reason),
            (CardLost, CardFound | IssuerDecision)
                | (UserDecision, UserDecision | IssuerDecision)
                | (IssuerDecision, IssuerDecision)
        ),
        _ => true,
    }
}

fn step(model: &Model, command: &CardCommand) -> Model {
    if !accepts(model, command) {
        return model.clone();
    }
    match command {
        CardCommand::Activate { .. } => Model { state: CardState::Active, suspended_for: None, renew_pending: false },
        CardCommand::Suspend { reason } => {
            Model { state: CardState::Suspended, suspended_for: Some(*reason), ..model.clone() }
        }
        CardCommand::Resume { .. } => Model { state: CardState::Active, suspended_for: None, ..model.clone() },
        CardCommand::Delete { .. } => {
            Model { state: CardState::Deleted, suspended_for: model.suspended_for, renew_pending: false }
        }
        CardCommand::Renew { .. } if model.state == CardState::Suspended => model.clone(),
        CardCommand::Renew { new_state, .. } => {
            Model { state: new_state.state(), suspended_for: None, renew_pending: *new_state == InitialState::Inactive }
        }
        CardCommand::Replace { .. } => {
            Model { state: CardState::Replaced, suspended_for: model.suspended_for, renew_pending: false }
        }
    }
}

fn any_reason() -> impl Strategy<Value = ReasonCode> {
    proptest::sample::select(ReasonCode::ALL.to_vec())
}

fn any_command() -> impl Strategy<Value = CardCommand> {
    let initial = prop_oneof![Just(InitialState::Active), Just(InitialState::Inactive)];
    prop_oneof![
        any_reason().prop_map(|reason| CardCommand::Activate { reason }),
        any_reason().prop_map(|reason| CardCommand::Suspend { reason }),
        any_reason().prop_map(|reason| CardCommand::Resume { reason }),
        any_reason().prop_map(|reason| CardCommand::Delete { reason }),
        (any_reason(), initial, 1u8..=12, 30u8..=40).prop_map(|(reason, new_state, month, year)| CardCommand::Renew {
            reason,
            new_expiry: Expiry::new(month, year).unwrap(),
            new_last4: None,
            new_state,
        }),
        any_reason().prop_map(|reason| CardCommand::Replace { reason }),
    ]
}

struct LifeCycle;

impl ReferenceStateMachine for LifeCycle {
    type State = Model;
    type Transition = CardCommand;

    fn init_state() -> BoxedStrategy<Model> {
        prop_oneof![
            Just(Model { state: CardState::Active, suspended_for: None, renew_pending: false }),
            Just(Model { state: CardState::Inactive, suspended_for: None, renew_pending: false }),
        ]
        .boxed()
    }

    fn transitions(_state: &Model) -> BoxedStrategy<CardCommand> {
        any_command().boxed()
    }

    fn apply(state: Model, transition: &CardCommand) -> Model {
        step(&state, transition)
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

impl StateMachineTest for LifeCycle {
    type SystemUnderTest = Card;
    type Reference = LifeCycle;

    fn init_test(model: &Model) -> Card {
        Card {
            id: CardId::parse("card-1").unwrap(),
            consumer_id: ConsumerId::parse("consumer-1").unwrap(),
            product_id: CardProductId::parse("VISA").unwrap(),
            scheme: Scheme::Visa,
            last4: "1111".into(),
            expiry: Expiry::new(12, 29).unwrap(),
            state: model.state,
            suspended_for: None,
            ongoing: None,
            origin: CardOrigin::Registered,
            cardholder_name: None,
            cardholder_name2: None,
            created_at: now(),
            updated_at: now(),
        }
    }

    fn apply(card: Card, model: &Model, command: CardCommand) -> Card {
        let before = card.clone();
        let next = match card.apply(&command, now()) {
            Ok(next) => next,
            Err(_) => before.clone(),
        };
        assert_eq!(next.state, model.state, "{command:?} from {:?}", before.state);
        assert_eq!(next.ongoing.is_some(), model.renew_pending, "{command:?}");
        if before.state.is_final() {
            assert_eq!(next, before, "a final state never changes: {command:?}");
        }
        let stolen = matches!(before.suspended_for, Some(CardStolen | CardBroken | Fraud));
        if before.state == CardState::Suspended && stolen {
            assert_ne!(next.state, CardState::Active, "a stolen, broken or fraudulent card is never resumed");
        }
        next
    }

    fn check_invariants(card: &Card, model: &Model) {
        assert_eq!(card.state, model.state);
        match card.state {
            CardState::Suspended => assert!(card.suspended_for.is_some(), "a suspension has a reason"),
            CardState::Active | CardState::Inactive => assert_eq!(card.suspended_for, None),
            CardState::Deleted | CardState::Replaced => {}
        }
        assert!(card.ongoing.is_none() || card.state == CardState::Inactive, "RENEW is ongoing only while inactive");
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn the_card_life_cycle_follows_the_model(sequential 1..40 => LifeCycle);
}
