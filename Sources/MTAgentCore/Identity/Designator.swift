/// One identification descriptor from SCSI INQUIRY VPD page 0x83 (SPC-4 §7.8.6), decoded.
///
/// `value` is what an admin compares against other tools: lowercase hex for binary designators
/// (as `sg_vpd` and `scsi_id` print them), the trimmed text for ASCII/UTF-8 ones.
public struct Designator: Codable, Sendable, Equatable, Hashable {
    public enum Kind: String, Codable, Sendable {
        case vendor
        case t10
        case eui64
        case naa
        case relativePort = "relative-port"
        case portGroup = "port-group"
        case luGroup = "lu-group"
        case md5
        case scsiName = "scsi-name"
        case protocolSpecific = "protocol-specific"
        case uuid
        case reserved
    }

    public enum CodeSet: String, Codable, Sendable {
        case binary, ascii, utf8, reserved
    }

    public enum Association: String, Codable, Sendable {
        /// The addressed logical unit: the only association that identifies the disk itself.
        case lun
        case targetPort = "target-port"
        case targetDevice = "target-device"
        case reserved
    }

    public var type: Kind
    public var codeSet: CodeSet
    public var association: Association
    public var value: String
    /// NAA format nibble (2, 3, 5, 6) for `naa` designators, else nil.
    @Nullable public var naaFormat: Int? = nil
    /// Protocol identifier (SPC-4 table 442) when the PIV bit makes it meaningful, else nil.
    @Nullable public var protocolIdentifier: Int? = nil

    public init(
        type: Kind, codeSet: CodeSet, association: Association, value: String,
        naaFormat: Int? = nil, protocolIdentifier: Int? = nil
    ) {
        self.type = type
        self.codeSet = codeSet
        self.association = association
        self.value = value
        self.naaFormat = naaFormat
        self.protocolIdentifier = protocolIdentifier
    }
}
