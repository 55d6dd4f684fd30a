export const xmlEscape = (text: string): string =>
  text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;')

export interface ChartBar {
  readonly label: string
  readonly value: number
  readonly color: string
}

export interface ChartGroup {
  readonly title: string
  readonly bars: readonly ChartBar[]
  /** Drawn as a dashed line across the group (a goal, or the reference the values are relative to). */
  readonly mark?: number
}

/** A horizontal bar chart of ratios, one group of bars per title: the docs' charts. */
export const barChart = (heading: string, groups: readonly ChartGroup[]): string => {
  const left = 250
  const width = 820
  const barHeight = 14
  const plotWidth = width - left - 60
  const maxValue = Math.max(1.2, ...groups.flatMap((group) => group.bars.map((bar) => bar.value)))
  const x = (value: number) => left + (value / maxValue) * plotWidth
  const parts: string[] = []
  let y = 40
  for (const group of groups) {
    if (group.bars.length === 0) continue
    parts.push(`<text x="10" y="${y + 10}" font-weight="bold">${xmlEscape(group.title)}</text>`)
    const top = y
    y += 16
    for (const bar of group.bars) {
      parts.push(
        `<text x="${left - 8}" y="${y + 11}" text-anchor="end">${xmlEscape(bar.label)}</text>`,
        `<rect x="${left}" y="${y}" width="${Math.max(1, x(bar.value) - left).toFixed(1)}" height="${barHeight}" fill="${bar.color}"/>`,
        `<text x="${(x(bar.value) + 4).toFixed(1)}" y="${y + 11}">${bar.value.toFixed(2)}</text>`,
      )
      y += barHeight + 4
    }
    if (group.mark !== undefined)
      parts.push(
        `<line x1="${x(group.mark).toFixed(1)}" y1="${top}" x2="${x(group.mark).toFixed(1)}" y2="${y}" stroke="#000" stroke-dasharray="4 3"/>`,
      )
    y += 12
  }
  const step = maxValue > 6 ? 1 : 0.5
  const axis = Array.from({ length: Math.floor(maxValue / step) + 1 }, (_, i) => i * step)
  const height = y + 30
  const ticks = axis
    .map(
      (tick) =>
        `<line x1="${x(tick).toFixed(1)}" y1="30" x2="${x(tick).toFixed(1)}" y2="${y}" stroke="#ddd"/><text x="${x(tick).toFixed(1)}" y="${y + 16}" text-anchor="middle">${tick}</text>`,
    )
    .join('')
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#fff"/>
<text x="10" y="20" font-size="14" font-weight="bold">${xmlEscape(heading)}</text>
${ticks}
${parts.join('\n')}
</svg>
`
}
