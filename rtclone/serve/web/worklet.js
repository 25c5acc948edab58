// AudioWorklet processors of the rtclone page.
// pcm-player: plays Float32Array chunks posted to its port gaplessly, after a small jitter
//   buffer; "reset" drops everything queued (barge-in), "end" lets it drain without counting
//   underruns. It reports {played, underruns} to the page a few times a second.
// pcm-recorder: posts a copy of each input block (mono) to the page.

class PcmPlayer extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.prebuffer = opts.prebuffer || Math.round(sampleRate * 0.1); // samples before playback starts
    this.reset();
    this.played = 0;
    this.underruns = 0;
    this.sinceReport = 0;
    this.port.onmessage = (e) => {
      if (e.data === "reset") this.reset();
      else if (e.data === "end") this.ended = true;
      else {
        this.queue.push(e.data);
        this.buffered += e.data.length;
      }
    };
  }

  reset() {
    this.queue = [];
    this.offset = 0; // read position inside queue[0]
    this.buffered = 0;
    this.started = false;
    this.ended = false;
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    out.fill(0);
    if (!this.started && (this.buffered >= this.prebuffer || (this.ended && this.buffered > 0))) this.started = true;
    if (this.started) {
      let filled = 0;
      while (filled < out.length && this.queue.length) {
        const head = this.queue[0];
        const take = Math.min(out.length - filled, head.length - this.offset);
        out.set(head.subarray(this.offset, this.offset + take), filled);
        filled += take;
        this.offset += take;
        if (this.offset === head.length) {
          this.queue.shift();
          this.offset = 0;
        }
      }
      this.buffered -= filled;
      this.played += filled;
      if (filled < out.length) {
        if (!this.ended) this.underruns += 1;
        this.started = false; // refill the jitter buffer before going on
      }
    }
    this.sinceReport += out.length;
    if (this.sinceReport >= sampleRate / 4) {
      this.sinceReport = 0;
      this.port.postMessage({ played: this.played, underruns: this.underruns, buffered: this.buffered });
    }
    return true;
  }
}

class PcmRecorder extends AudioWorkletProcessor {
  process(inputs) {
    const ch = inputs[0] && inputs[0][0];
    if (ch && ch.length) this.port.postMessage(ch.slice(0));
    return true;
  }
}

registerProcessor("pcm-player", PcmPlayer);
registerProcessor("pcm-recorder", PcmRecorder);
