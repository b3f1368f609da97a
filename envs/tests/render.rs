//! The classic-control frames: gymnasium's sizes, and each body drawn where the state puts it
//! (centroids of its colour against the layout of gymnasium's renderers).

use glimpse::image::Image;
use glimpse::{Env, EnvError};
use glimpse_envs::{Acrobot, CartPole, MountainCar, Pendulum};

/// The mean column and row (from the top) of the pixels of `color`, and how many there are.
fn centroid(image: &Image, color: [u8; 3]) -> (f64, f64, usize) {
    let (mut sx, mut sy, mut n) = (0.0, 0.0, 0);
    for (i, p) in image.data.chunks_exact(3).enumerate() {
        if p == color {
            sx += (i % image.width) as f64 + 0.5;
            sy += (i / image.width) as f64 + 0.5;
            n += 1;
        }
    }
    (sx / n.max(1) as f64, sy / n.max(1) as f64, n)
}

const BLACK: [u8; 3] = [0, 0, 0];

#[test]
fn cartpole_draws_the_cart_at_its_position_and_the_pole_at_its_angle() {
    let mut env = CartPole::new();
    for x in [0.0, 1.2, -2.0] {
        env.set_state([x, 0.0, 0.0, 0.0]);
        let frame = env.render().unwrap();
        assert_eq!((frame.width, frame.height, frame.channels), (600, 400, 3));
        // The cart spans rows 285..315 from the top (centre 100 px above the bottom); below the
        // axle (rows past 297) nothing covers it.
        let cart: Vec<usize> = (0..600).filter(|&c| frame.data[(305 * 600 + c) * 3..][..3] == BLACK).collect();
        let centre = cart.iter().sum::<usize>() as f64 / cart.len() as f64 + 0.5;
        assert!((centre - (300.0 + x * 125.0)).abs() < 1.0, "x {x}: cart centred at {centre}");
        assert_eq!(cart.len(), 50, "the cart is 50 px wide");
    }
    env.set_state([0.0, 0.0, 0.2, 0.0]);
    let (col, row, n) = centroid(&env.render().unwrap(), [202, 152, 101]);
    assert!(n > 500 && col > 300.0 && row < 292.5, "a positive angle leans the pole right: {col}, {row}");
}

#[test]
fn pendulum_points_up_at_angle_zero_and_down_at_pi() {
    let mut env = Pendulum::new();
    env.reset(Some(0)).unwrap();
    env.state = [0.0, 0.0];
    let up = env.render().unwrap();
    assert_eq!((up.width, up.height), (500, 500));
    let (col, row, _) = centroid(&up, [204, 77, 77]);
    assert!((col - 250.0).abs() < 1.0 && row < 200.0, "up: {col}, {row}");
    env.state = [std::f64::consts::PI, 0.0];
    let (_, row, _) = centroid(&env.render().unwrap(), [204, 77, 77]);
    assert!(row > 300.0, "down: {row}");
}

#[test]
fn mountain_car_moves_right_and_up_the_hill_with_its_position() {
    let mut env = MountainCar::new();
    env.reset(Some(0)).unwrap();
    let grey = [128, 128, 128];
    let mut last = (0.0, f64::INFINITY);
    for position in [-0.5, 0.0, 0.4] {
        env.state = [position, 0.0];
        let frame = env.render().unwrap();
        assert_eq!((frame.width, frame.height), (600, 400));
        let (col, row, n) = centroid(&frame, grey);
        assert!(n > 100, "both wheels");
        assert!((col - (position + 1.2) * 600.0 / 1.8).abs() < 8.0, "position {position}: wheels at {col}");
        assert!(col > last.0 && (position < 0.0 || row < last.1), "further right, and higher past the valley");
        last = (col, row);
    }
    let (_, _, flag) = centroid(&env.render().unwrap(), [204, 204, 0]);
    assert!(flag > 100, "the flag");
}

#[test]
fn acrobot_hangs_down_at_rest_and_reaches_up_when_swung_over() {
    let mut env = Acrobot::new();
    env.reset(Some(0)).unwrap();
    env.state = [0.0; 4];
    let frame = env.render().unwrap();
    assert_eq!((frame.width, frame.height), (500, 500));
    let (col, row, _) = centroid(&frame, [0, 204, 204]);
    assert!((col - 250.0).abs() < 1.0 && row > 300.0, "hanging: {col}, {row}");
    env.state = [std::f64::consts::PI, 0.0, 0.0, 0.0];
    let (_, row, _) = centroid(&env.render().unwrap(), [0, 204, 204]);
    assert!(row < 200.0, "upside down: {row}");
}

#[test]
fn the_registered_envs_render_through_their_wrappers_and_others_refuse() {
    let mut env = glimpse_envs::cartpole_v1();
    env.reset(Some(1)).unwrap();
    assert_eq!(env.render().unwrap().data.len(), 600 * 400 * 3);
    let bandit = glimpse_envs::toy::TwoArmedBandit::new(0);
    assert!(matches!(bandit.render(), Err(EnvError::Unsupported(_))));
}

#[test]
fn a_recorded_episode_hands_out_one_frame_per_step_plus_the_first() {
    let always_right = |obs: &[f32]| Ok(vec![1usize; obs.len() / 4]);
    let mut frames = 0;
    let mut count = |frame: Image| {
        assert_eq!((frame.width, frame.height), (600, 400));
        frames += 1;
        Ok(())
    };
    let result = glimpse::evaluate::record_greedy(&glimpse_envs::cartpole_v1, 2, 3, always_right, &mut count).unwrap();
    assert_eq!(frames, result.lengths.iter().sum::<usize>() + 2);
    let played = glimpse::evaluate::evaluate_greedy(&glimpse_envs::cartpole_v1, 2, 3, always_right).unwrap();
    assert_eq!(played.returns, result.returns, "the same episodes an evaluation with that seed plays");
    let mut refuse = |_: Image| Err(EnvError::Other("disk full".into()));
    let err =
        glimpse::evaluate::record_greedy(&glimpse_envs::cartpole_v1, 1, 3, always_right, &mut refuse).unwrap_err();
    assert!(err.to_string().contains("disk full"));
}
