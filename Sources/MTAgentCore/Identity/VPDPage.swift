/// Decoders for the binary INQUIRY VPD pages the kernel exposes in sysfs
/// (`device/vpd_pg83`, `device/vpd_pg80`). They never trap on bad input: whatever cannot be
/// decoded is reported as a warning, and every complete descriptor before it is kept.
public enum VPDPage {
    public struct DeviceIdentification: Sendable, Equatable {
        public var designators: [Designator]
        public var warnings: [String]
    }

    /// Decodes page 0x83 (Device Identification), header included.
    public static func decodeDeviceIdentification(_ page: [UInt8]) -> DeviceIdentification {
        var warnings: [String] = []
        guard page.count >= 4 else {
            return .init(designators: [], warnings: ["VPD page 0x83 is truncated: \(page.count) bytes, the header alone is 4"])
        }
        guard page[1] == 0x83 else {
            return .init(designators: [], warnings: ["VPD page 0x83 has page code 0x\(hex([page[1]])); ignored"])
        }
        let declared = Int(page[2]) << 8 | Int(page[3])
        var end = 4 + declared
        if end > page.count {
            warnings.append("VPD page 0x83 declares \(declared) bytes but holds \(page.count - 4); decoding what is complete")
            end = page.count
        }

        var designators: [Designator] = []
        var offset = 4
        while offset < end {
            guard offset + 4 <= end else {
                warnings.append("VPD page 0x83: descriptor header at byte \(offset) is truncated")
                break
            }
            let length = Int(page[offset + 3])
            let bodyStart = offset + 4
            guard bodyStart + length <= end else {
                warnings.append("VPD page 0x83: descriptor at byte \(offset) declares \(length) bytes, only \(end - bodyStart) remain")
                break
            }
            let body = Array(page[bodyStart..<bodyStart + length])
            let (designator, warning) = decodeDescriptor(header: (page[offset], page[offset + 1]), body: body, at: offset)
            if let designator { designators.append(designator) }
            if let warning { warnings.append(warning) }
            offset = bodyStart + length
        }
        return .init(designators: designators, warnings: warnings)
    }

    /// Decodes page 0x80 (Unit Serial Number). Returns nil for an absent, empty or malformed page.
    public static func decodeUnitSerial(_ page: [UInt8]) -> String? {
        guard page.count >= 4, page[1] == 0x80 else { return nil }
        let declared = Int(page[2]) << 8 | Int(page[3])
        let end = min(page.count, 4 + declared)
        let serial = text(page[4..<end])
        return serial.isEmpty ? nil : serial
    }

    private static func decodeDescriptor(
        header: (UInt8, UInt8), body: [UInt8], at offset: Int
    ) -> (Designator?, String?) {
        let codeSet: Designator.CodeSet =
            switch header.0 & 0x0F {
            case 1: .binary
            case 2: .ascii
            case 3: .utf8
            default: .reserved
            }
        let piv = header.1 & 0x80 != 0
        let association: Designator.Association =
            switch (header.1 >> 4) & 0x03 {
            case 0: .lun
            case 1: .targetPort
            case 2: .targetDevice
            default: .reserved
            }
        let protocolIdentifier = piv && association != .lun ? Int(header.0 >> 4) : nil
        let typeCode = header.1 & 0x0F

        func make(_ type: Designator.Kind, _ value: String, naa: Int? = nil) -> Designator {
            Designator(
                type: type, codeSet: codeSet, association: association, value: value,
                naaFormat: naa, protocolIdentifier: protocolIdentifier)
        }
        func rendered() -> String { codeSet == .binary || codeSet == .reserved ? hex(body) : text(body[...]) }

        switch typeCode {
        case 0:
            return (make(.vendor, rendered()), nil)
        case 1:
            return (make(.t10, text(body[...])), nil)
        case 2:
            guard [8, 12, 16].contains(body.count) else {
                return (make(.eui64, hex(body)), "VPD page 0x83: EUI-64 designator at byte \(offset) has length \(body.count), expected 8, 12 or 16")
            }
            return (make(.eui64, hex(body)), nil)
        case 3:
            guard let first = body.first else {
                return (nil, "VPD page 0x83: empty NAA designator at byte \(offset); ignored")
            }
            let format = Int(first >> 4)
            let expected = format == 6 ? 16 : 8
            let warning =
                body.count == expected
                ? nil : "VPD page 0x83: NAA-\(format) designator at byte \(offset) has length \(body.count), expected \(expected)"
            return (make(.naa, hex(body), naa: format), warning)
        case 4, 5, 6:
            guard body.count >= 4 else {
                return (nil, "VPD page 0x83: designator type \(typeCode) at byte \(offset) is shorter than 4 bytes; ignored")
            }
            let number = Int(body[2]) << 8 | Int(body[3])
            let kind: Designator.Kind = typeCode == 4 ? .relativePort : typeCode == 5 ? .portGroup : .luGroup
            return (make(kind, String(number)), nil)
        case 7:
            return (make(.md5, hex(body)), nil)
        case 8:
            return (make(.scsiName, text(body[...])), nil)
        case 9:
            return (make(.protocolSpecific, hex(body)), nil)
        case 0xA:
            guard body.count == 18 else {
                return (make(.uuid, hex(body)), "VPD page 0x83: UUID designator at byte \(offset) has length \(body.count), expected 18")
            }
            return (make(.uuid, uuidString(Array(body[2...]))), nil)
        default:
            return (make(.reserved, hex(body)), nil)
        }
    }

    static func hex<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Text designators are space- or NUL-padded; non-printable bytes become `.` so a garbage
    /// page can never inject control characters into a terminal or a log.
    static func text(_ bytes: ArraySlice<UInt8>) -> String {
        var chars = bytes.prefix { $0 != 0 }.map { (0x20...0x7E).contains($0) ? $0 : UInt8(ascii: ".") }
        while chars.last == UInt8(ascii: " ") { chars.removeLast() }
        while chars.first == UInt8(ascii: " ") { chars.removeFirst() }
        return String(decoding: chars, as: UTF8.self)
    }

    private static func uuidString(_ b: [UInt8]) -> String {
        let h = hex(b)
        let parts = [8, 4, 4, 4, 12]
        var result: [String] = []
        var index = h.startIndex
        for p in parts {
            let next = h.index(index, offsetBy: p)
            result.append(String(h[index..<next]))
            index = next
        }
        return result.joined(separator: "-")
    }
}
