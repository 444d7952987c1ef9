/**
 * JSON text in and out, without losing integers above 2^53.
 *
 * Streaming-export timestamps are int64 nanoseconds sent as bare JSON
 * numbers (about 1.7e18), which `JSON.parse` rounds and `JSON.stringify`
 * cannot write from a BigInt. So requests are read with a small parser that
 * keeps such literals as text, and replies are written by `stringify`, which
 * writes BigInts as exact integers and splices in pre-written value JSON.
 */

/** An integer literal too large for a double: kept as its source text. */
export class BigJsonInteger {
  constructor(readonly text: string) {}
}

/** JSON text written elsewhere (e.g. by `values.ts`), spliced in as-is. */
export class RawJson {
  constructor(readonly text: string) {}
}

export class JsonSyntaxError extends Error {}

/** Like `JSON.parse`, but unsafe integers become `BigJsonInteger`. */
export function parseJson(text: string): unknown {
  const parser = new Parser(text);
  parser.skipSpace();
  const value = parser.value();
  parser.skipSpace();
  if (parser.pos !== text.length) {
    throw parser.fail("trailing characters");
  }
  return value;
}

/** A parsed number in plain form: the double it names, like `JSON.parse`. */
export function toPlainJson(value: unknown): unknown {
  if (value instanceof BigJsonInteger) {
    return Number(value.text);
  }
  if (Array.isArray(value)) {
    return value.map(toPlainJson);
  }
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = toPlainJson(v);
    }
    return out;
  }
  return value;
}

/**
 * `JSON.stringify` for reply envelopes: BigInt as an exact integer, `RawJson`
 * verbatim, `undefined` fields left out.
 */
export function stringify(value: unknown): string {
  if (value instanceof RawJson) {
    return value.text;
  }
  if (typeof value === "bigint") {
    return value.toString();
  }
  if (Array.isArray(value)) {
    return `[${value.map(stringify).join(",")}]`;
  }
  if (value !== null && typeof value === "object") {
    const parts: string[] = [];
    for (const [k, v] of Object.entries(value)) {
      if (v !== undefined) {
        parts.push(`${JSON.stringify(k)}:${stringify(v)}`);
      }
    }
    return `{${parts.join(",")}}`;
  }
  return JSON.stringify(value ?? null);
}

const NUMBER = /-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;

class Parser {
  pos = 0;

  constructor(private readonly text: string) {}

  fail(what: string): JsonSyntaxError {
    return new JsonSyntaxError(`${what} at position ${this.pos}`);
  }

  skipSpace(): void {
    while (this.pos < this.text.length && " \t\n\r".includes(this.text[this.pos]!)) {
      this.pos++;
    }
  }

  value(): unknown {
    const c = this.text[this.pos];
    switch (c) {
      case "{":
        return this.object();
      case "[":
        return this.array();
      case '"':
        return this.string();
      case "t":
        return this.word("true", true);
      case "f":
        return this.word("false", false);
      case "n":
        return this.word("null", null);
      default:
        if (c === "-" || (c !== undefined && c >= "0" && c <= "9")) {
          return this.number();
        }
        throw this.fail(c === undefined ? "unexpected end of input" : `unexpected '${c}'`);
    }
  }

  private word<T>(word: string, value: T): T {
    if (!this.text.startsWith(word, this.pos)) {
      throw this.fail("invalid literal");
    }
    this.pos += word.length;
    return value;
  }

  private number(): number | BigJsonInteger {
    NUMBER.lastIndex = this.pos;
    const match = NUMBER.exec(this.text);
    if (match === null) {
      throw this.fail("invalid number");
    }
    const literal = match[0];
    this.pos += literal.length;
    const value = Number(literal);
    const isInteger = match[2] === undefined && match[3] === undefined;
    return isInteger && !Number.isSafeInteger(value) ? new BigJsonInteger(literal) : value;
  }

  private string(): string {
    // Find the closing quote, then let JSON.parse decode the escapes.
    let end = this.pos + 1;
    while (end < this.text.length && this.text[end] !== '"') {
      end += this.text[end] === "\\" ? 2 : 1;
    }
    if (end >= this.text.length) {
      throw this.fail("unterminated string");
    }
    const literal = this.text.slice(this.pos, end + 1);
    try {
      const decoded = JSON.parse(literal) as string;
      this.pos = end + 1;
      return decoded;
    } catch {
      throw this.fail("invalid string");
    }
  }

  private array(): unknown[] {
    this.pos++;
    const out: unknown[] = [];
    this.skipSpace();
    if (this.text[this.pos] === "]") {
      this.pos++;
      return out;
    }
    for (;;) {
      this.skipSpace();
      out.push(this.value());
      this.skipSpace();
      const c = this.text[this.pos++];
      if (c === "]") {
        return out;
      }
      if (c !== ",") {
        this.pos--;
        throw this.fail("expected ',' or ']'");
      }
    }
  }

  private object(): Record<string, unknown> {
    this.pos++;
    const out: Record<string, unknown> = {};
    this.skipSpace();
    if (this.text[this.pos] === "}") {
      this.pos++;
      return out;
    }
    for (;;) {
      this.skipSpace();
      if (this.text[this.pos] !== '"') {
        throw this.fail("expected a field name");
      }
      const key = this.string();
      this.skipSpace();
      if (this.text[this.pos++] !== ":") {
        this.pos--;
        throw this.fail("expected ':'");
      }
      this.skipSpace();
      // defineProperty: a "__proto__" key is data, not the prototype.
      Object.defineProperty(out, key, {
        value: this.value(),
        enumerable: true,
        writable: true,
        configurable: true,
      });
      this.skipSpace();
      const c = this.text[this.pos++];
      if (c === "}") {
        return out;
      }
      if (c !== ",") {
        this.pos--;
        throw this.fail("expected ',' or '}'");
      }
    }
  }
}
