import NIOCore

/// The codec's self-consistency check, shared by the libFuzzer target (`mt-agent-frame-fuzzer`)
/// and the corpus replay test, so CI runs exactly what the fuzzer ran.
///
/// The bytes are a stream of frames. They are decoded with `FrameDecoder.decodeOne` until it
/// needs more data or throws; every frame that decodes must
/// - re-encode to exactly the bytes it was decoded from (the format has one encoding per frame),
/// - decode again, from those bytes alone, to an equal frame with nothing left over;
/// and feeding the same bytes one at a time must give the same frames and the same error (the
/// header/body state machine must not depend on how the stream is cut).
public enum FrameRoundTrip {
    /// A violation of the invariants above: a codec bug.
    public struct Mismatch: Error, CustomStringConvertible {
        public var description: String
    }

    /// `verify`, crashing on a mismatch (what a fuzz target must do). Returns how many frames
    /// decoded and the error that stopped decoding (nil: the input ended, maybe inside a frame).
    public static func check(_ bytes: [UInt8]) -> (frames: Int, error: FrameError?) {
        do {
            return try verify(bytes)
        } catch {
            fatalError("frame round trip: \(error.description)")
        }
    }

    /// The same check, throwing instead of crashing (for tests that name the failing input).
    public static func verify(_ bytes: [UInt8]) throws(Mismatch) -> (frames: Int, error: FrameError?) {
        // The whole input at once.
        var buffer = ByteBuffer(bytes: bytes)
        var decoder = FrameDecoder()
        var frames: [Frame] = []
        var failure: FrameError?
        while true {
            let start = buffer.readerIndex
            let decoded: Frame?
            do {
                decoded = try decoder.decodeOne(&buffer)
            } catch let error as FrameError {
                failure = error
                break
            } catch {
                throw Mismatch(description: "decodeOne threw \(error), which is not a FrameError")
            }
            guard let frame = decoded else { break }
            // `buffer` was made from `bytes`, so its indices are indices into `bytes` (ByteBuffer's
            // `getBytes` cannot reach back before the reader index).
            let wire = Array(bytes[start..<buffer.readerIndex])

            var encoded = ByteBuffer()
            frame.encode(into: &encoded)
            let reencoded = Array(encoded.readableBytesView)
            guard reencoded == wire else {
                throw Mismatch(description: "frame \(frames) (type 0x\(String(frame.type, radix: 16))) re-encodes to \(hex(reencoded)), decoded from \(hex(wire))")
            }
            var again = FrameDecoder()
            let redecoded: Frame?
            do {
                redecoded = try again.decodeOne(&encoded)
            } catch {
                throw Mismatch(description: "frame \(frames) (type 0x\(String(frame.type, radix: 16))) re-encoded does not decode: \(error)")
            }
            guard redecoded == frame, encoded.readableBytes == 0 else {
                throw Mismatch(description: "frame \(frames) (type 0x\(String(frame.type, radix: 16))) decodes again to \(String(describing: redecoded).prefix(500)), not \(String(describing: frame).prefix(500))")
            }
            frames.append(frame)
        }

        // The same bytes one at a time.
        var drip = ByteBuffer()
        var dripDecoder = FrameDecoder()
        var dripFrames: [Frame] = []
        var dripFailure: FrameError?
        feeding: for byte in bytes {
            drip.writeInteger(byte)
            while true {
                do {
                    guard let frame = try dripDecoder.decodeOne(&drip) else { break }
                    dripFrames.append(frame)
                } catch let error as FrameError {
                    dripFailure = error
                    break feeding
                } catch {
                    throw Mismatch(description: "decodeOne threw \(error), which is not a FrameError")
                }
            }
        }
        guard dripFrames == frames, dripFailure == failure else {
            throw Mismatch(description: "byte-by-byte decoding gives \(dripFrames.count) frames and \(String(describing: dripFailure)); all at once \(frames.count) frames and \(String(describing: failure))")
        }
        return (frames.count, failure)
    }

    private static func hex(_ bytes: [UInt8]) -> String {
        let shown = bytes.prefix(64).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        return bytes.count > 64 ? "\(shown)… (\(bytes.count) bytes)" : shown
    }
}
