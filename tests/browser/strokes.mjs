// Stroke paths for the digits 0-9 on a 280x280 canvas, written the way people draw them.
// Each digit is a list of strokes; each stroke a list of [x, y] points.

const arc = (cx, cy, rx, ry, fromDeg, toDeg, steps = 24) =>
  Array.from({ length: steps + 1 }, (_, i) => {
    const t = ((fromDeg + (toDeg - fromDeg) * (i / steps)) * Math.PI) / 180;
    return [cx + rx * Math.cos(t), cy + ry * Math.sin(t)];
  });

const line = (a, b, steps = 10) =>
  Array.from({ length: steps + 1 }, (_, i) => [a[0] + ((b[0] - a[0]) * i) / steps, a[1] + ((b[1] - a[1]) * i) / steps]);

export const DIGITS = {
  0: [arc(140, 140, 55, 85, -90, 270, 40)],
  1: [line([130, 60], [145, 225])],
  2: [[...arc(140, 100, 50, 45, 190, 380), ...line([187, 115], [90, 230]), ...line([90, 230], [205, 228])]],
  3: [[...arc(138, 95, 45, 40, 200, 450), ...arc(138, 182, 52, 48, 270, 520)]],
  4: [[...line([120, 50], [85, 165]), ...line([85, 165], [210, 165])], line([175, 95], [175, 235])],
  5: [[...line([195, 55], [105, 55]), ...line([105, 55], [100, 130]), ...arc(135, 180, 55, 52, 235, 505)]],
  6: [[...line([180, 50], [130, 80]), ...line([130, 80], [100, 130]), ...arc(140, 185, 45, 45, 180, 540, 32)]],
  7: [[...line([85, 60], [195, 60]), ...line([195, 60], [120, 235])]],
  8: [arc(140, 92, 40, 40, 90, 450, 32), arc(140, 180, 50, 50, -90, 270, 32)],
  9: [arc(135, 100, 45, 45, 0, 360, 32), line([180, 100], [170, 235])],
};

// Moves every stroke of a digit right by dx (to write a number on a wider canvas).
export const shifted = (strokes, dx) => strokes.map((s) => s.map(([x, y]) => [x + dx, y]));
