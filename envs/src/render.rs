//! RGB frames of the classic-control environments, laid out as gymnasium's `rgb_array`
//! renderers lay them out (the same sizes, scales, shapes and colours), drawn with
//! [`glimpse::draw::Canvas`]. Gymnasium's pygame drawing antialiases a few outlines and the
//! pendulum shows an arrow picture for the last torque; these frames do neither.

use glimpse::draw::{rotate_translate, Canvas, Rgb};
use glimpse::image::Image;
use std::f64::consts::PI;

const WHITE: Rgb = [255, 255, 255];
const BLACK: Rgb = [0, 0, 0];

/// CartPole-v1, 600 × 400: the cart (black) on the track, the pole (tan) on its axle (lilac).
pub fn cartpole(state: &[f64; 4], x_threshold: f64, half_pole_length: f64) -> Image {
    let width = 600.0;
    let scale = width / (2.0 * x_threshold);
    let (pole_width, pole_length) = (10.0, scale * 2.0 * half_pole_length);
    let (cart_width, cart_height) = (50.0, 30.0);
    let mut c = Canvas::new(600, 400, WHITE);
    let (cart_x, cart_y) = (state[0] * scale + width / 2.0, 100.0);
    let axle_offset = cart_height / 4.0;
    let (l, r, t, b) = (-cart_width / 2.0, cart_width / 2.0, cart_height / 2.0, -cart_height / 2.0);
    c.polygon(&rotate_translate(&[(l, b), (l, t), (r, t), (r, b)], 0.0, (cart_x, cart_y)), BLACK);
    let (l, r, t, b) = (-pole_width / 2.0, pole_width / 2.0, pole_length - pole_width / 2.0, -pole_width / 2.0);
    let pole = rotate_translate(&[(l, b), (l, t), (r, t), (r, b)], -state[2], (cart_x, cart_y + axle_offset));
    c.polygon(&pole, [202, 152, 101]);
    c.circle((cart_x, cart_y + axle_offset), pole_width / 2.0, [129, 132, 203]);
    c.line((0.0, cart_y), (width, cart_y), 1.0, BLACK);
    c.into_image()
}

/// Pendulum-v1, 500 × 500: the rod (red) from its axle (black), a disc at each end.
pub fn pendulum(state: &[f64; 2]) -> Image {
    let size = 500.0;
    let bound = 2.2;
    let scale = size / (2.0 * bound);
    let offset = size / 2.0;
    let (rod_length, rod_width) = (scale, 0.2 * scale);
    let mut c = Canvas::new(500, 500, WHITE);
    let (l, r, t, b) = (0.0, rod_length, rod_width / 2.0, -rod_width / 2.0);
    let angle = state[0] + PI / 2.0;
    let rod = rotate_translate(&[(l, b), (l, t), (r, t), (r, b)], angle, (offset, offset));
    let red = [204, 77, 77];
    c.polygon(&rod, red);
    c.circle((offset, offset), rod_width / 2.0, red);
    let end = (offset + rod_length * angle.cos(), offset + rod_length * angle.sin());
    c.circle(end, rod_width / 2.0, red);
    c.circle((offset, offset), 0.05 * scale, BLACK);
    c.into_image()
}

/// MountainCar-v0 and MountainCarContinuous-v0, 600 × 400: the hill, the car (black, grey
/// wheels) tilted with the slope, the flag (yellow) at `goal`.
pub fn mountain_car(position: f64, min_position: f64, max_position: f64, goal: f64) -> Image {
    let width = 600.0;
    let scale = width / (max_position - min_position);
    let hill = |x: f64| (3.0 * x).sin() * 0.45 + 0.55;
    let (car_width, car_height, clearance) = (40.0, 20.0, 10.0);
    let mut c = Canvas::new(600, 400, WHITE);
    let curve: Vec<(f64, f64)> = (0..100)
        .map(|i| min_position + (max_position - min_position) * i as f64 / 99.0)
        .map(|x| ((x - min_position) * scale, hill(x) * scale))
        .collect();
    c.polyline(&curve, 1.0, BLACK);
    let angle = (3.0 * position).cos();
    let at = ((position - min_position) * scale, clearance + hill(position) * scale);
    let (l, r, t, b) = (-car_width / 2.0, car_width / 2.0, car_height, 0.0);
    c.polygon(&rotate_translate(&[(l, b), (l, t), (r, t), (r, b)], angle, at), BLACK);
    for x in [car_width / 4.0, -car_width / 4.0] {
        let wheel = rotate_translate(&[(x, 0.0)], angle, at)[0];
        c.circle(wheel, car_height / 2.5, [128, 128, 128]);
    }
    let flag_x = (goal - min_position) * scale;
    let (flag_bottom, flag_top) = (hill(goal) * scale, hill(goal) * scale + 50.0);
    c.line((flag_x, flag_bottom), (flag_x, flag_top), 1.0, BLACK);
    c.polygon(&[(flag_x, flag_top), (flag_x, flag_top - 10.0), (flag_x + 25.0, flag_top - 5.0)], [204, 204, 0]);
    c.into_image()
}

/// Acrobot-v1, 500 × 500: the target height (black line), both links (teal) and their joints
/// (yellow).
pub fn acrobot(state: &[f64; 4], link_1: f64, link_2: f64) -> Image {
    let size = 500.0;
    let bound = link_1 + link_2 + 0.2;
    let scale = size / (2.0 * bound);
    let offset = size / 2.0;
    let mut c = Canvas::new(500, 500, WHITE);
    // Gymnasium computes the joints with x up and y sideways, then swaps the two.
    let p1 = (-link_1 * state[0].cos() * scale, link_1 * state[0].sin() * scale);
    let p2 = (p1.0 - link_2 * (state[0] + state[1]).cos() * scale, p1.1 + link_2 * (state[0] + state[1]).sin() * scale);
    let joints = [(0.0, 0.0), (p1.1, p1.0), (p2.1, p2.0)];
    let thetas = [state[0] - PI / 2.0, state[0] + state[1] - PI / 2.0];
    let lengths = [link_1 * scale, link_2 * scale];
    c.line((-2.2 * scale + offset, scale + offset), (2.2 * scale + offset, scale + offset), 1.0, BLACK);
    for ((&(x, y), &theta), &length) in joints.iter().zip(&thetas).zip(&lengths) {
        let (x, y) = (x + offset, y + offset);
        let (l, r, t, b) = (0.0, length, 0.1 * scale, -0.1 * scale);
        c.polygon(&rotate_translate(&[(l, b), (l, t), (r, t), (r, b)], theta, (x, y)), [0, 204, 204]);
        c.circle((x, y), 0.1 * scale, [204, 204, 0]);
    }
    c.into_image()
}
