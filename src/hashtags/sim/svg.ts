/** Tiny SVG writers for the simulator's pictures (no plotting dependency). */

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;')

export interface Series { label: string, color: string, points: Array<[number, number]> }

/** a scatter/line chart; x and y in data units, optional log y */
export function chart (title: string, xLabel: string, yLabel: string, series: Series[], opts: { logY?: boolean, logX?: boolean, width?: number, height?: number, line?: boolean } = {}): string {
  const W = opts.width ?? 720; const H = opts.height ?? 420
  const m = { l: 70, r: 20, t: 40, b: 50 }
  const fx = (x: number): number => (opts.logX === true ? Math.log10(Math.max(x, 1e-12)) : x)
  const fy = (y: number): number => (opts.logY === true ? Math.log10(Math.max(y, 1e-12)) : y)
  const all = series.flatMap(s => s.points)
  const xs = all.map(p => fx(p[0])); const ys = all.map(p => fy(p[1]))
  const x0 = Math.min(...xs); const x1 = Math.max(...xs) || 1
  const y0 = Math.min(...ys); const y1 = Math.max(...ys)
  const sx = (x: number): number => m.l + (fx(x) - x0) / (x1 - x0 || 1) * (W - m.l - m.r)
  const sy = (y: number): number => H - m.b - (fy(y) - y0) / (y1 - y0 || 1) * (H - m.t - m.b)
  const out: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${esc(title)}</text>`,
    `<line x1="${m.l}" y1="${H - m.b}" x2="${W - m.r}" y2="${H - m.b}" stroke="black"/>`,
    `<line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${H - m.b}" stroke="black"/>`,
    `<text x="${W / 2}" y="${H - 12}" text-anchor="middle">${esc(xLabel)}</text>`,
    `<text x="16" y="${H / 2}" text-anchor="middle" transform="rotate(-90 16 ${H / 2})">${esc(yLabel)}</text>`]
  for (let i = 0; i <= 4; i++) {
    const vy = y0 + (y1 - y0) * i / 4; const py = H - m.b - (H - m.t - m.b) * i / 4
    const label = opts.logY === true ? `1e${vy.toFixed(1)}` : vy.toPrecision(3)
    out.push(`<text x="${m.l - 4}" y="${py + 4}" text-anchor="end">${label}</text>`)
    const vx = x0 + (x1 - x0) * i / 4; const px = m.l + (W - m.l - m.r) * i / 4
    out.push(`<text x="${px}" y="${H - m.b + 16}" text-anchor="middle">${opts.logX === true ? `1e${vx.toFixed(1)}` : vx.toPrecision(3)}</text>`)
  }
  series.forEach((s, k) => {
    if (opts.line === true) {
      out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="1.5" points="${s.points.map(p => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(' ')}"/>`)
    } else {
      for (const p of s.points) out.push(`<circle cx="${sx(p[0]).toFixed(1)}" cy="${sy(p[1]).toFixed(1)}" r="1.8" fill="${s.color}" fill-opacity="0.6"/>`)
    }
    out.push(`<rect x="${W - m.r - 190}" y="${m.t + k * 16}" width="10" height="10" fill="${s.color}"/><text x="${W - m.r - 175}" y="${m.t + 9 + k * 16}">${esc(s.label)}</text>`)
  })
  out.push('</svg>')
  return out.join('\n')
}

/** node IDs on the ring (figure 8, left) plus a histogram of positions (figure 8, bottom) */
export function ringPlot (title: string, positions: number[], bins = 64): string {
  const W = 720; const H = 420; const cx = 200; const cy = 220; const r = 160
  const out: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${esc(title)}</text>`,
    `<circle cx="${cx}" cy="${cy}" r="${r}" fill="none" stroke="#999"/>`]
  for (const u of positions) {
    const a = 2 * Math.PI * u - Math.PI / 2
    out.push(`<circle cx="${(cx + r * Math.cos(a)).toFixed(1)}" cy="${(cy + r * Math.sin(a)).toFixed(1)}" r="2" fill="#1f77b4" fill-opacity="0.5"/>`)
  }
  const counts = new Array<number>(bins).fill(0)
  for (const u of positions) counts[Math.min(bins - 1, Math.floor(u * bins))]++
  const max = Math.max(...counts)
  const hx = 400; const hw = 300; const hy = 360; const hh = 280
  out.push(`<line x1="${hx}" y1="${hy}" x2="${hx + hw}" y2="${hy}" stroke="black"/>`)
  counts.forEach((c, i) => {
    const h = c / max * hh
    out.push(`<rect x="${(hx + i * hw / bins).toFixed(1)}" y="${(hy - h).toFixed(1)}" width="${(hw / bins - 0.5).toFixed(1)}" height="${h.toFixed(1)}" fill="#ff7f0e"/>`)
  })
  out.push(`<text x="${hx + hw / 2}" y="${hy + 20}" text-anchor="middle">ring position (0 to 2^256), ${bins} bins; max ${max}</text>`)
  out.push('</svg>')
  return out.join('\n')
}
