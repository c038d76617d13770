"""The GraphQL Admin schema subset ShopSim serves (SDL), and the dicts its resolvers return.

Field and enum names are Shopify's (https://shopify.dev/docs/api/admin-graphql, research/
shopify.md §1.3, §1.6, §1.7). Money amounts print like Shopify's `Decimal` scalar: "2000.0",
"25.5" (fixture `graphql_orders_details_docs.json`); `legacyResourceId` is an `UnsignedInt64`,
which Shopify serialises as a string; times are UTC seconds with `Z`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pollerd.model import utc_iso
from pollerd_sim.shop_orders import DisputeRec, EventRec, LineRec, OrderRec, RefundRec

SHOP_ID = 690933842
_CURRENCY_CODES = (
    "AED AUD BRL CAD CHF CNY CZK DKK EUR GBP HKD HUF IDR ILS INR "
    "JPY KRW MXN MYR NOK NZD PHP PLN SEK SGD THB TRY TWD USD ZAR"
)
CURRENCIES = tuple(_CURRENCY_CODES.split())

SDL = """
schema { query: QueryRoot mutation: Mutation }

scalar DateTime
scalar Date
scalar Decimal
scalar URL
scalar UnsignedInt64
scalar FormattedString

interface Node { id: ID! }
interface Event { id: ID! action: String! appTitle: String createdAt: DateTime!
  message: FormattedString! }

enum OrderSortKeys { CREATED_AT CURRENT_TOTAL_PRICE CUSTOMER_NAME DESTINATION FINANCIAL_STATUS
  FULFILLMENT_STATUS ID ORDER_NUMBER PO_NUMBER PROCESSED_AT RELEVANCE TOTAL_ITEMS_QUANTITY
  TOTAL_PRICE UPDATED_AT }
enum EventSortKeys { CREATED_AT ID RELEVANCE }
enum OrderCancelReason { CUSTOMER DECLINED FRAUD INVENTORY OTHER STAFF }
enum OrderDisplayFinancialStatus { AUTHORIZED EXPIRED PAID PARTIALLY_PAID PARTIALLY_REFUNDED
  PENDING REFUNDED VOIDED }
enum OrderDisplayFulfillmentStatus { FULFILLED FULFILLMENT_NOT_REQUIRED IN_PROGRESS ON_HOLD OPEN
  PARTIALLY_FULFILLED PENDING_FULFILLMENT REQUEST_DECLINED RESTOCKED SCHEDULED UNFULFILLED }
enum CurrencyCode { %(currencies)s }
enum EventSubjectType { ORDER PRODUCT COLLECTION CUSTOMER DRAFT_ORDER }
enum BulkOperationStatus { CANCELED CANCELING COMPLETED CREATED EXPIRED FAILED RUNNING }
enum BulkOperationErrorCode { ACCESS_DENIED INTERNAL_SERVER_ERROR TIMEOUT }
enum BulkOperationType { MUTATION QUERY }
enum BulkOperationUserErrorCode { INVALID OPERATION_IN_PROGRESS }
enum DisputeStatus { ACCEPTED CHARGE_REFUNDED LOST NEEDS_RESPONSE UNDER_REVIEW WON }
enum DisputeType { CHARGEBACK INQUIRY }
enum ShopifyPaymentsDisputeReason { BANK_CANNOT_PROCESS CREDIT_NOT_PROCESSED CUSTOMER_INITIATED
  DEBIT_NOT_AUTHORIZED DUPLICATE FRAUDULENT GENERAL INCORRECT_ACCOUNT_DETAILS INSUFFICIENT_FUNDS
  NONCOMPLIANT PRODUCT_NOT_RECEIVED PRODUCT_UNACCEPTABLE SUBSCRIPTION_CANCELLED UNRECOGNIZED }

type PageInfo { hasNextPage: Boolean! hasPreviousPage: Boolean! startCursor: String
  endCursor: String }
type MoneyV2 { amount: Decimal! currencyCode: CurrencyCode! }
type MoneyBag { shopMoney: MoneyV2! presentmentMoney: MoneyV2! }

type Customer implements Node { id: ID! firstName: String lastName: String displayName: String!
  email: String phone: String }
type LineItem implements Node { id: ID! name: String! quantity: Int! sku: String
  originalTotalSet: MoneyBag! }
type LineItemEdge { cursor: String! node: LineItem! }
type LineItemConnection { nodes: [LineItem!]! edges: [LineItemEdge!]! pageInfo: PageInfo! }
type Refund implements Node { id: ID! createdAt: DateTime totalRefundedSet: MoneyBag! }
enum OrderTransactionKind { AUTHORIZATION CAPTURE CHANGE EMV_AUTHORIZATION REFUND SALE
  SUGGESTED_REFUND VOID }
enum OrderTransactionStatus { AWAITING_RESPONSE ERROR FAILURE PENDING SUCCESS UNKNOWN }
type OrderTransaction implements Node { id: ID! kind: OrderTransactionKind!
  status: OrderTransactionStatus! processedAt: DateTime createdAt: DateTime! }
enum FulfillmentStatus { CANCELLED ERROR FAILURE OPEN PENDING SUCCESS }
type Fulfillment implements Node { id: ID! createdAt: DateTime! status: FulfillmentStatus! }

type Order implements Node {
  id: ID! legacyResourceId: UnsignedInt64! name: String!
  createdAt: DateTime! updatedAt: DateTime! processedAt: DateTime!
  cancelledAt: DateTime cancelReason: OrderCancelReason closed: Boolean! closedAt: DateTime
  displayFinancialStatus: OrderDisplayFinancialStatus
  displayFulfillmentStatus: OrderDisplayFulfillmentStatus!
  test: Boolean! email: String phone: String
  currencyCode: CurrencyCode! presentmentCurrencyCode: CurrencyCode!
  totalPriceSet: MoneyBag! currentTotalPriceSet: MoneyBag! totalRefundedSet: MoneyBag!
  customer: Customer
  lineItems(first: Int, after: String, last: Int, before: String, reverse: Boolean = false):
    LineItemConnection!
  paymentGatewayNames: [String!]!
  clientIp: String
  refunds(first: Int): [Refund!]!
  transactions(first: Int): [OrderTransaction!]!
  fulfillments(first: Int): [Fulfillment!]!
  statusPageUrl: URL!
}
type OrderEdge { cursor: String! node: Order! }
type OrderConnection { nodes: [Order!]! edges: [OrderEdge!]! pageInfo: PageInfo! }

type BasicEvent implements Event & Node { id: ID! action: String! appTitle: String
  createdAt: DateTime! message: FormattedString! subjectId: ID! subjectType: EventSubjectType! }
type EventEdge { cursor: String! node: Event! }
type EventConnection { nodes: [Event!]! edges: [EventEdge!]! pageInfo: PageInfo! }

type ShopifyPaymentsDisputeReasonDetails { reason: ShopifyPaymentsDisputeReason!
  networkReasonCode: String }
type ShopifyPaymentsDispute implements Node {
  id: ID! legacyResourceId: UnsignedInt64! status: DisputeStatus! type: DisputeType!
  amount: MoneyV2! reasonDetails: ShopifyPaymentsDisputeReasonDetails!
  initiatedAt: DateTime! evidenceDueBy: Date evidenceSentOn: Date finalizedOn: Date
  order: Order
}
type ShopifyPaymentsDisputeEdge { cursor: String! node: ShopifyPaymentsDispute! }
type ShopifyPaymentsDisputeConnection { nodes: [ShopifyPaymentsDispute!]!
  edges: [ShopifyPaymentsDisputeEdge!]! pageInfo: PageInfo! }

type Shop implements Node { id: ID! name: String! myshopifyDomain: String! ianaTimezone: String!
  currencyCode: CurrencyCode! }
type AccessScope { handle: String! description: String! }
type AppInstallation implements Node { id: ID! accessScopes: [AccessScope!]! }

type BulkOperation implements Node {
  id: ID! status: BulkOperationStatus! errorCode: BulkOperationErrorCode
  objectCount: UnsignedInt64! rootObjectCount: UnsignedInt64! fileSize: UnsignedInt64
  url: URL partialDataUrl: URL createdAt: DateTime! completedAt: DateTime query: String!
  type: BulkOperationType!
}
type BulkOperationUserError { code: BulkOperationUserErrorCode field: [String!] message: String! }
type UserError { field: [String!] message: String! }
type BulkOperationRunQueryPayload { bulkOperation: BulkOperation
  userErrors: [BulkOperationUserError!]! }
type BulkOperationCancelPayload { bulkOperation: BulkOperation userErrors: [UserError!]! }

type QueryRoot {
  orders(first: Int, after: String, last: Int, before: String, reverse: Boolean = false,
    sortKey: OrderSortKeys = PROCESSED_AT, query: String, savedSearchId: ID): OrderConnection!
  order(id: ID!): Order
  node(id: ID!): Node
  nodes(ids: [ID!]!): [Node]!
  events(first: Int, after: String, last: Int, before: String, reverse: Boolean = false,
    sortKey: EventSortKeys = ID, query: String): EventConnection
  disputes(first: Int, after: String, last: Int, before: String, reverse: Boolean = false,
    query: String): ShopifyPaymentsDisputeConnection
  shop: Shop!
  currentAppInstallation: AppInstallation!
  currentBulkOperation(type: BulkOperationType = QUERY): BulkOperation
}

type Mutation {
  bulkOperationRunQuery(query: String!, groupObjects: Boolean): BulkOperationRunQueryPayload
  bulkOperationCancel(id: ID!): BulkOperationCancelPayload
}
""" % {"currencies": " ".join(CURRENCIES)}  # noqa: UP031 - SDL braces make format() unreadable


def gid(kind: str, number: int) -> str:
    return f"gid://shopify/{kind}/{number}"


def gql_amount(value: Decimal) -> str:
    """Shopify's `Decimal`: no trailing zeros, but always a fraction ("25.0", "25.5")."""
    text = format(value.normalize(), "f")
    return text if "." in text else text + ".0"


def money_v2(value: Decimal, currency: str) -> dict[str, Any]:
    return {"amount": gql_amount(value), "currencyCode": currency}


def money_bag(value: Decimal, currency: str) -> dict[str, Any]:
    return {"shopMoney": money_v2(value, currency), "presentmentMoney": money_v2(value, currency)}


def render_line(line: LineRec, currency: str) -> dict[str, Any]:
    return {
        "__typename": "LineItem",
        "id": gid("LineItem", line.id),
        "name": line.name,
        "quantity": line.quantity,
        "sku": line.sku or None,
        "originalTotalSet": money_bag(line.price * line.quantity, currency),
    }


def render_refund(refund: RefundRec, currency: str) -> dict[str, Any]:
    return {
        "__typename": "Refund",
        "id": gid("Refund", refund.id),
        "createdAt": utc_iso(refund.created_at),
        "totalRefundedSet": money_bag(refund.amount, currency),
    }


def render_order(rec: OrderRec, shop: str) -> dict[str, Any]:
    """The Order node as resolvers serve it; `_rec` feeds the `lineItems`/`refunds` resolvers."""
    cur = rec.currency
    return {
        "__typename": "Order",
        "_rec": rec,
        "id": gid("Order", rec.id),
        "legacyResourceId": str(rec.id),
        "name": rec.name,
        "createdAt": utc_iso(rec.created_at),
        "updatedAt": utc_iso(rec.updated_at),
        "processedAt": utc_iso(rec.created_at),
        "cancelledAt": utc_iso(rec.cancelled_at),
        "cancelReason": rec.cancel_reason,
        "closed": rec.closed_at is not None,
        "closedAt": utc_iso(rec.closed_at),
        "displayFinancialStatus": rec.financial,
        "displayFulfillmentStatus": rec.fulfillment,
        "test": rec.test,
        "email": rec.email,
        "phone": rec.phone,
        "currencyCode": cur,
        "presentmentCurrencyCode": cur,
        "totalPriceSet": money_bag(rec.total, cur),
        "currentTotalPriceSet": money_bag(rec.total - rec.refunded, cur),
        "totalRefundedSet": money_bag(rec.refunded, cur),
        "customer": {
            "__typename": "Customer",
            "id": gid("Customer", rec.customer_id),
            "firstName": rec.first_name,
            "lastName": rec.last_name,
            "displayName": f"{rec.first_name} {rec.last_name}".strip(),
            "email": rec.email,
            "phone": rec.phone,
        },
        "paymentGatewayNames": [rec.gateway],
        "clientIp": rec.ip or None,
        "transactions": [
            {
                "__typename": "OrderTransaction",
                "id": gid("OrderTransaction", t.id),
                "kind": t.kind,
                "status": t.status,
                "processedAt": utc_iso(t.processed_at),
                "createdAt": utc_iso(t.processed_at),
            }
            for t in rec.transactions
        ],
        "fulfillments": [
            {
                "__typename": "Fulfillment",
                "id": gid("Fulfillment", rec.id * 100 + i),
                "createdAt": utc_iso(when),
                "status": "SUCCESS",
            }
            for i, when in enumerate(rec.fulfilled)
        ],
        "statusPageUrl": (
            f"https://{shop}/{SHOP_ID}/orders/{rec.token}/authenticate?key={rec.token[::-1]}"
        ),
    }


def ground_truth(rec: OrderRec, shop: str) -> dict[str, Any]:
    """Every Order field, nested lists included: what a query selecting everything returns."""
    node = {k: v for k, v in render_order(rec, shop).items() if not k.startswith("_")}
    node["lineItems"] = {"nodes": [render_line(li, rec.currency) for li in rec.items]}
    node["refunds"] = [render_refund(r, rec.currency) for r in rec.refunds]
    return node


def render_event(event: EventRec) -> dict[str, Any]:
    return {
        "__typename": "BasicEvent",
        "id": gid("BasicEvent", event.id),
        "action": event.action,
        "appTitle": None,
        "createdAt": utc_iso(event.created_at),
        "message": event.message,
        "subjectId": gid("Order", event.subject_id),
        "subjectType": event.subject_type,
    }


def render_dispute(dispute: DisputeRec, order: dict[str, Any] | None) -> dict[str, Any]:
    def day(value: Any) -> str | None:
        return value.date().isoformat() if value is not None else None

    return {
        "__typename": "ShopifyPaymentsDispute",
        "id": gid("ShopifyPaymentsDispute", dispute.id),
        "legacyResourceId": str(dispute.id),
        "status": dispute.status,
        "type": dispute.type,
        "amount": money_v2(dispute.amount, dispute.currency),
        "reasonDetails": {"reason": dispute.reason, "networkReasonCode": "4837"},
        "initiatedAt": utc_iso(dispute.initiated_at),
        "evidenceDueBy": day(dispute.evidence_due_by),
        "evidenceSentOn": day(dispute.evidence_sent_on),
        "finalizedOn": day(dispute.finalized_on),
        "order": order,
    }
