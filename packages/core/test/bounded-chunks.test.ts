import { describe, expect, it } from 'vitest'
import { boundedChunks } from '../src/index.js'

describe('boundedChunks', () => {
  const sizeOf = (n: number) => n

  it('keeps the order and cuts at maxItems', () => {
    expect(boundedChunks([1, 1, 1, 1, 1], { maxItems: 2, maxBytes: 100, sizeOf })).toEqual([
      [1, 1],
      [1, 1],
      [1],
    ])
  })

  it('cuts before an item that would pass maxBytes; an item over it alone is its own chunk', () => {
    expect(boundedChunks([4, 4, 3, 20, 1], { maxItems: 10, maxBytes: 10, sizeOf })).toEqual([
      [4, 4],
      [3],
      [20],
      [1],
    ])
    expect(boundedChunks([5, 5], { maxItems: 10, maxBytes: 10, sizeOf })).toEqual([[5, 5]])
  })

  it('answers no chunk for no items', () => {
    expect(boundedChunks([], { maxItems: 1, maxBytes: 1, sizeOf })).toEqual([])
  })
})
