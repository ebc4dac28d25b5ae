/** Per-peer frame rate limit: `rate` tokens a second, at most `burst` saved up. */
export class TokenBucket {
  private tokens: number
  private at = Date.now()

  constructor (private readonly rate: number, private readonly burst: number) {
    this.tokens = burst
  }

  take (): boolean {
    const now = Date.now()
    this.tokens = Math.min(this.burst, this.tokens + (now - this.at) * this.rate / 1000)
    this.at = now
    if (this.tokens < 1) return false
    this.tokens -= 1
    return true
  }
}
