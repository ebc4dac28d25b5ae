import { join } from 'node:path'
import { loadTreeState, saveTreeState, type TreeState } from './state.js'

/** One tree at a time: a local rescan and an incoming merge never interleave. */
export class TreeLocks {
  private readonly tails = new Map<string, Promise<void>>()

  async with<T> (tree: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(tree) ?? Promise.resolve()
    let release = (): void => {}
    const next = new Promise<void>((resolve) => { release = resolve })
    const tail = prev.then(() => next)
    this.tails.set(tree, tail)
    await prev
    try {
      return await fn()
    } finally {
      release()
      if (this.tails.get(tree) === tail) this.tails.delete(tree)
    }
  }
}

/** `users/alice` → `users~alice`: one file or directory name per tree. */
export const treeSlug = (tree: string): string => tree.replace('/', '~')

/** The per-tree histories, cached; callers hold the tree's lock. */
export class TreeStates {
  private readonly cache = new Map<string, TreeState>()
  constructor (private readonly dir: string) {}

  file (tree: string): string { return join(this.dir, `${treeSlug(tree)}.json`) }

  async get (tree: string): Promise<TreeState> {
    let s = this.cache.get(tree)
    if (s === undefined) {
      s = await loadTreeState(this.file(tree))
      this.cache.set(tree, s)
    }
    return s
  }

  async save (tree: string): Promise<void> {
    const s = this.cache.get(tree)
    if (s !== undefined) await saveTreeState(this.file(tree), s)
  }
}
